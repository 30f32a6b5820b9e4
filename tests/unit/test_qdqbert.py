"""QDQBERT checkpoints (model_type qdqbert, `_amax` buffers) import into qtool's quantized BERT."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from qtoolkit.errors import QtoolError, QtoolWarning
from qtoolkit.export.torch_export import float_mode
from qtoolkit.models import load_model
from qtoolkit.quant import iter_quantizers, load_quantized
from qtoolkit.quant.qdqbert_import import import_qdqbert
from qtoolkit.recipe import ModelConfig

from ..conftest import bert_config

LAYERS = 2


def qdqbert_amax_names(layers: int) -> list[str]:
    """Every TensorQuantizer of a QDQBERT encoder, as modeling_qdqbert.py (transformers 4.x,
    removed in 5) names them: QuantLinear's `_input_quantizer`/`_weight_quantizer` on the six
    encoder Linears, `matmul_{q,k,v,a}_input_quantizer` on QDQBertSelfAttention and
    `add_{local,residual}_input_quantizer` on QDQBertSelfOutput and QDQBertOutput."""
    names = []
    for i in range(layers):
        layer = f"bert.encoder.layer.{i}"
        for linear in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "intermediate.dense",
            "output.dense",
        ):
            names += [f"{layer}.{linear}._input_quantizer", f"{layer}.{linear}._weight_quantizer"]
        names += [f"{layer}.attention.self.matmul_{x}_input_quantizer" for x in "qkva"]
        for block in ("attention.output", "output"):
            names += [f"{layer}.{block}.add_{x}_input_quantizer" for x in ("local", "residual")]
    return names


def _weight_amax(state: dict, name: str) -> torch.Tensor:
    weight = state[name.removesuffix("._weight_quantizer") + ".weight"]
    return weight.abs().amax(dim=1, keepdim=True)  # per row, shape [out, 1] as QDQBERT saved


def write_qdqbert_checkpoint(tmp_path, tiny_bert_dir, drop=(), extra=()) -> tuple:
    """A QDQBERT-format folder: BERT weights + amax buffers under QDQBERT's names."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(3)
    model = BertForSequenceClassification(bert_config(initializer_range=0.2, vocab_size=120))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    amax = {}
    for name in qdqbert_amax_names(LAYERS):
        if name in drop:
            continue
        if name.endswith("._weight_quantizer"):
            amax[f"{name}._amax"] = _weight_amax(state, name)
        else:
            amax[f"{name}._amax"] = torch.tensor(1.0 + 4 * torch.rand((), generator=gen).item())
    amax.update({f"{n}._amax": torch.tensor(2.0) for n in extra})
    out = tmp_path / "qdqbert"
    out.mkdir()
    save_file({**state, **amax}, str(out / "model.safetensors"))
    config = model.config.to_dict()
    config.update(model_type="qdqbert", architectures=["QDQBertForSequenceClassification"])
    (out / "config.json").write_text(json.dumps(config))
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(out)
    return out, model, amax


def _batch():
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 120, (4, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1:, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def test_import_places_every_qdqbert_quantizer_and_its_amax(tmp_path, tiny_bert_dir):
    path, float_model, amax = write_qdqbert_checkpoint(tmp_path, tiny_bert_dir)
    imported = import_qdqbert(path)
    assert imported.task == "sequence-classification"
    assert imported.quant.residual_inputs == "both" and imported.quant.weight_per_channel
    ours = dict(iter_quantizers(imported.model))
    # Exactly QDQBERT's placement: no quantizer on the pooler or the classifier.
    assert set(ours) == set(qdqbert_amax_names(LAYERS))
    assert imported.dropped == [] and imported.uncalibrated == [] and imported.warnings() == []
    for key, value in amax.items():
        assert torch.equal(ours[key.removesuffix("._amax")]._amax, value), key
    # The float weights are the checkpoint's, and fake quant is on and changes the logits.
    for name, p in float_model.state_dict().items():
        assert torch.equal(imported.model.state_dict()[name], p), name
    with torch.no_grad():
        quant_logits = imported.model(**_batch()).logits
        float_logits = float_model.eval()(**_batch()).logits
    assert not torch.allclose(quant_logits, float_logits)
    with float_mode(imported.model), torch.no_grad():
        # (the float model runs sdpa attention, the import eager: equal up to rounding)
        assert torch.allclose(imported.model(**_batch()).logits, float_logits, atol=1e-5)


def test_import_warns_about_unmatched_and_uncalibrated_quantizers(tmp_path, tiny_bert_dir):
    uncalibrated = "bert.encoder.layer.1.attention.self.matmul_a_input_quantizer"
    # A quantizer qtool's BERT has no place for (e.g. from a user's edited QDQBERT).
    stray = "bert.embeddings.LayerNorm._input_quantizer"
    path, _, _ = write_qdqbert_checkpoint(tmp_path, tiny_bert_dir, [uncalibrated], [stray])
    with pytest.warns(QtoolWarning) as caught:
        ckpt = load_quantized(path)
    text = " ".join(str(w.message) for w in caught)
    assert stray in text and "no counterpart" in text
    assert uncalibrated in text and "left in float" in text
    quantizers = dict(iter_quantizers(ckpt.model))
    assert quantizers[uncalibrated]._disabled
    assert ckpt.manifest["disabled_quantizers"] == [uncalibrated]
    assert ckpt.manifest["source_format"] == "qdqbert"


def test_imported_checkpoint_exports_and_evaluates(tmp_path, tiny_bert_dir, calib_jsonl):
    from qtoolkit.pipeline.evaluate import run_evaluate
    from qtoolkit.pipeline.export import export_checkpoint
    from qtoolkit.recipe import Recipe

    path, _, _ = write_qdqbert_checkpoint(tmp_path, tiny_bert_dir)
    recipe = Recipe.model_validate(
        {"data": {"calib_file": str(calib_jsonl)}, "export": {"num_samples": 16}}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", QtoolWarning)  # a full QDQBERT checkpoint: no warning
        result = export_checkpoint(path, tmp_path / "export" / "model.onnx", recipe)
    assert result.validation.passed and result.violations == []
    # 2 layers x (6 Linear inputs + 4 matmul inputs + 4 residual-add inputs) activations.
    assert result.op_counts["QuantizeLinear"] >= 2 * 14
    labelled = tmp_path / "test.jsonl"
    labelled.write_text(
        "".join(json.dumps({"text": "the movie was good", "label": i % 2}) + "\n" for i in range(6))
    )
    fake = run_evaluate(path, recipe, labelled)
    ort = run_evaluate(tmp_path / "export" / "model.onnx", recipe, labelled)
    assert fake.backend == "torch-fakequant" and ort.backend == "onnxruntime"
    assert fake.num_examples == ort.num_examples == 6


def test_float_load_of_a_qdqbert_checkpoint(tmp_path, tiny_bert_dir):
    path, float_model, _ = write_qdqbert_checkpoint(tmp_path, tiny_bert_dir)
    loaded = load_model(ModelConfig(path=str(path)))
    assert loaded.spec.name == "bert" and loaded.newly_initialized == []
    with torch.no_grad():
        ref = float_model.eval()(**_batch()).logits
        assert torch.allclose(loaded.model(**_batch()).logits, ref, atol=1e-5)


def test_qdqbert_decoder_heads_are_refused(tmp_path, tiny_bert_dir):
    path, _, _ = write_qdqbert_checkpoint(tmp_path, tiny_bert_dir)
    config = json.loads((path / "config.json").read_text())
    config["architectures"] = ["QDQBertLMHeadModel"]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(QtoolError, match="causal"):
        import_qdqbert(path)


def test_benchmark_target_takes_a_qdqbert_folder_as_fake_quant(tmp_path, tiny_bert_dir):
    """A QDQBERT folder is quantized (its amax are read at load): `torch-fakequant=` accepts it,
    and given under a plain label it is inferred as fake-quant, not fp32."""
    from qtoolkit.bench.targets import parse_target

    folder, _, _ = write_qdqbert_checkpoint(tmp_path, tiny_bert_dir)
    assert parse_target(f"torch-fakequant={folder}").backend.name == "torch-fakequant"
    assert parse_target(f"mine={folder}").backend.name == "torch-fakequant"
    assert parse_target(f"torch-fp32={tiny_bert_dir}").backend.name == "torch-fp32"
