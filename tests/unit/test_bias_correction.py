"""Bias correction: removes each GEMM's mean output error and lowers the model's output error."""

from __future__ import annotations

import torch

from qtoolkit.models import load_model
from qtoolkit.quant import calibrate, insert_quantizers
from qtoolkit.quant.bias_correction import correct_biases, quantized_gemms, revert_biases
from qtoolkit.quant.smoothquant import quantizers_off
from qtoolkit.recipe import CalibConfig, ModelConfig, QuantConfig


def _batches():
    gen = torch.Generator().manual_seed(1)
    out = []
    for rows, length in ((8, 16), (8, 12)):
        ids = torch.randint(5, 120, (rows, length), generator=gen)
        mask = torch.ones_like(ids)
        mask[: rows // 2, length // 2 :] = 0
        out.append({"input_ids": ids * mask, "attention_mask": mask})
    return out


def _mean_gemm_error(model, batches, float_bias):
    """Per GEMM, |mean of (float - quantized output)| averaged over channels, each GEMM fed
    what the quantized model feeds it; the float GEMM has the original bias."""
    errors = {}

    def hook_for(name):
        def hook(m, args, out):
            ref = torch.nn.functional.linear(args[0], m.weight, float_bias[name])
            errors.setdefault(name, []).append((ref - out).reshape(-1, out.shape[-1]))

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in quantized_gemms(model)]
    with torch.no_grad():
        for b in batches:
            model(**b)
    for h in handles:
        h.remove()
    return sum(float(torch.cat(v).mean(0).abs().mean()) for v in errors.values()) / len(errors)


def test_bias_correction_lowers_output_error(tiny_bert_dir):
    model = load_model(
        ModelConfig(
            path=str(tiny_bert_dir),
            random_init=True,
            config_overrides={"initializer_range": 0.2, "vocab_size": 120},
        )
    ).model.eval()
    # 4 bits: the rounding error is large enough to bias the outputs measurably.
    insert_quantizers(model, QuantConfig(num_bits=4, residual_add=False, attention_matmul=False))
    batches = _batches()

    def loop(m):
        for b in batches:
            m(**b)

    calibrate(model, loop, CalibConfig(method="max"))
    with torch.no_grad(), quantizers_off(model):
        ref = torch.cat([model(**b).logits for b in batches])
    with torch.no_grad():
        before_logits = torch.cat([model(**b).logits for b in batches])
    float_bias = {n: m.bias.detach().clone() for n, m in quantized_gemms(model)}
    before = _mean_gemm_error(model, batches, float_bias)

    correction = correct_biases(model, loop)
    assert correction.deltas and not correction.no_bias
    after = _mean_gemm_error(model, batches, float_bias)
    with torch.no_grad():
        after_logits = torch.cat([model(**b).logits for b in batches])
    assert after < before / 2, (before, after)
    assert (after_logits - ref).pow(2).mean() < (before_logits - ref).pow(2).mean()

    revert_biases(model, correction)
    with torch.no_grad():
        again = torch.cat([model(**b).logits for b in batches])
    assert torch.allclose(again, before_logits, atol=1e-6)


def test_only_the_weight_error_is_corrected_not_activation_clipping(tiny_bert_dir):
    """The shift is (W - W_q) x_q averaged over real tokens: an activation quantizer that clips
    hard (amax cut to a tenth) must not move it. Correcting the whole output error instead cost
    the real MiniLM classifier 6 points of dev agreement (see bias_correction.py)."""
    cfg = ModelConfig(
        path=str(tiny_bert_dir), random_init=True, config_overrides={"vocab_size": 120}
    )
    model = load_model(cfg).model.eval()
    insert_quantizers(model, QuantConfig(residual_add=False, attention_matmul=False))
    batches = _batches()

    def loop(m):
        for b in batches:
            m(**b)

    calibrate(model, loop, CalibConfig(method="max"))
    name, gemm = quantized_gemms(model)[0]
    gemm._input_quantizer._amax.mul_(0.1)  # heavy clipping of this GEMM's input
    seen = []

    def record(m, args, out):
        xq = m._input_quantizer(args[0])
        seen.append((xq, torch.nn.functional.linear(args[0], m.weight, m.bias) - out))

    handle = gemm.register_forward_hook(record)
    masks = []
    with torch.no_grad():
        for b in batches:
            model(**b)
            masks.append(b["attention_mask"].bool())
    handle.remove()
    with torch.no_grad():
        w_error = gemm.weight - gemm._weight_quantizer(gemm.weight)
        real = [(xq[mask], full[mask]) for (xq, full), mask in zip(seen, masks, strict=True)]
        expected = torch.cat([xq @ w_error.T for xq, _ in real]).mean(0)
        whole = torch.cat([full for _, full in real]).mean(0)

    correction = correct_biases(model, loop)
    torch.testing.assert_close(correction.deltas[name], expected, atol=1e-5, rtol=1e-4)
    # The clipped activations make the whole output error far larger than the weight error.
    assert whole.abs().mean() > 5 * expected.abs().mean()
