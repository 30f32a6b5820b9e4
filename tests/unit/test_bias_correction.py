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
