"""SmoothQuant: exact in float on both architectures, flatter activations, survives a reload."""

from __future__ import annotations

import torch

from qtoolkit.models import load_model
from qtoolkit.quant import insert_quantizers
from qtoolkit.quant.smoothquant import (
    INPUT_SCALE,
    RESIDUAL_SCALE,
    apply_smoothquant,
    collect_input_absmax,
    quantizers_off,
    smooth_sites,
)
from qtoolkit.recipe import CalibConfig, ModelConfig, QuantConfig


def _model_with_outliers(path):
    """A tiny model whose LayerNorms have a few large channels, as trained BERTs do."""
    model = load_model(ModelConfig(path=str(path))).model.eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                idx = torch.randperm(m.weight.numel(), generator=gen)[:3]
                m.weight[idx] *= 25.0
                m.bias.add_(torch.randn(m.bias.shape, generator=gen) * 0.5)
    return model


def _loop(batch):
    def loop(model):
        model(**batch)

    return loop


def _logits(model, batch):
    with torch.no_grad(), quantizers_off(model):
        return model(**batch).logits


def test_smoothed_float_model_is_exact(tiny_dir, sample_batch):
    model = _model_with_outliers(tiny_dir)
    insert_quantizers(model, QuantConfig())
    before = _logits(model, sample_batch)
    sites = apply_smoothquant(model, _loop(sample_batch), alpha=0.5)
    after = _logits(model, sample_batch)
    assert {s.kind for s in sites} == {"qkv", "ffn_in", "attn_out", "ffn_out"}
    # Something really moved: scales far from 1 on the outlier channels.
    assert max(float(s.scale.max()) for s in sites) > 2.0
    assert torch.allclose(before, after, atol=1e-5, rtol=0), (before - after).abs().max()
    names = {n.rpartition(".")[2] for n, _ in model.named_buffers()}
    assert {INPUT_SCALE, RESIDUAL_SCALE} <= names


def test_smoothing_flattens_the_lnorm_outputs(tiny_dir, sample_batch):
    model = _model_with_outliers(tiny_dir)
    insert_quantizers(model, QuantConfig())
    sites = [s for s in smooth_sites(model) if s.kind == "qkv"]
    spread_before = _spread(collect_input_absmax(model, sites, _loop(sample_batch)))
    apply_smoothquant(model, _loop(sample_batch), alpha=0.5, kinds=["qkv"])
    spread_after = _spread(collect_input_absmax(model, sites, _loop(sample_batch)))
    assert spread_after < spread_before / 2


def _spread(stats):
    return max(float(v.max() / v.median()) for v in stats.values())


def test_smoothed_checkpoint_reloads_and_exports_plain_qdq(tiny_dir, sample_batch, tmp_path):
    from qtoolkit.quant import calibrate, load_quantized, save_quantized

    loaded = load_model(ModelConfig(path=str(tiny_dir)))
    model = loaded.model.eval()
    cfg = QuantConfig(smoothquant={"alpha": 0.6})
    insert_quantizers(model, cfg)
    apply_smoothquant(model, _loop(sample_batch), alpha=0.6)
    calibrate(model, _loop(sample_batch), CalibConfig(method="max"))
    with torch.no_grad():
        want = model(**sample_batch).logits
    save_quantized(model, loaded.tokenizer, tmp_path / "ckpt", cfg)
    ckpt = load_quantized(tmp_path / "ckpt")
    with torch.no_grad():
        got = ckpt.model(**sample_batch).logits
    assert torch.equal(want, got)


def _random_batch(rows: int, length: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (rows, length), generator=gen)
    ids[:, 0], ids[:, -1] = 2, 3
    mask = torch.ones_like(ids)
    mask[1, length // 2 :] = 0
    types = torch.zeros_like(ids)
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types}


def _smoothed_random_model(tiny_dir, quant: QuantConfig):
    """A random-init tiny model (weights large enough to matter), quantizers of `quant`,
    SmoothQuant alpha 0.5 and max calibration on two random batches: (model, batches)."""
    from qtoolkit.quant import calibrate

    loaded = load_model(
        ModelConfig(
            path=str(tiny_dir),
            random_init=True,
            config_overrides={"initializer_range": 0.2, "vocab_size": 120},
        )
    )
    model = loaded.model.eval()
    batches = [_random_batch(4, 16, s) for s in range(2)]
    insert_quantizers(model, quant)
    apply_smoothquant(model, lambda m: [m(**b) for b in batches], alpha=0.5)
    calibrate(model, lambda m: [m(**b) for b in batches], CalibConfig(method="max"))
    return model, batches


def test_smoothed_model_exports_plain_tensorrt_ready_qdq(tiny_dir, tmp_path):
    import onnx

    from qtoolkit.export import check_onnx, export_onnx

    model, batches = _smoothed_random_model(tiny_dir, QuantConfig(smoothquant={"alpha": 0.5}))
    from qtoolkit.recipe import ExportConfig

    result = export_onnx(model, tmp_path / "sq.onnx", ExportConfig(), batches)
    assert result.validation.passed and result.violations == []
    assert check_onnx(result.path) == []
    ops = {n.op_type for n in onnx.load(str(result.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Mul"} <= ops
    assert not any(op.startswith("QLinear") or op.endswith("Integer") for op in ops)


def test_openvino_layout_moves_the_layernorm_scale_onto_the_quantizer(tiny_dir, tmp_path):
    """export.target openvino: where a LayerNorm fed a quantizer and, through SmoothQuant's
    per-channel Mul, the residual add, the residual takes the LayerNorm output directly and the
    quantizer gets a Mul(1/s) of its own; the export still validates against PyTorch. (BERT's
    LayerNorms; SqueezeBERT's sit between transposes, where the pass finds nothing to move.)"""
    import onnx

    from qtoolkit.export import export_onnx
    from qtoolkit.export.graph import GraphIndex
    from qtoolkit.recipe import ExportConfig

    quant = QuantConfig(residual_add=False, smoothquant={"alpha": 0.5})
    model, batches = _smoothed_random_model(tiny_dir, quant)

    def ln_consumers(path):
        proto = onnx.load(str(path))
        idx = GraphIndex(proto.graph)
        lns = [n for n in proto.graph.node if n.op_type == "LayerNormalization"]
        return idx, {n.name: sorted(c.op_type for c in idx.consumers[n.output[0]]) for n in lns}

    trt = export_onnx(model, tmp_path / "trt.onnx", ExportConfig(target="tensorrt"), batches)
    ov = export_onnx(model, tmp_path / "ov.onnx", ExportConfig(target="openvino"), batches)
    assert ov.validation.passed and trt.validation.passed
    assert ov.violations == []  # the TensorRT rules still hold
    _, before = ln_consumers(trt.path)
    idx, after = ln_consumers(ov.path)
    moved = [n for n, c in before.items() if "Mul" in c and "QuantizeLinear" in c]
    if model.config.model_type == "bert":
        assert len(moved) == 2 * model.config.num_hidden_layers  # the qkv and ffn_in sites
    for name in moved:
        assert "QuantizeLinear" not in after[name] and after[name].count("Mul") == 1, name
    smooth = [n for n in idx.graph.node if n.name.endswith("/smooth")]
    assert len(smooth) == len(moved)
    for node in smooth:
        assert [c.op_type for c in idx.consumers[node.output[0]]] == ["QuantizeLinear"]
