"""SmoothQuant for BERT and SqueezeBERT: move activation range into the weights, exactly.

For a GEMM ``y = x W^T`` and a per-input-channel scale ``s``, ``y = (x / s) (W s)^T``. Choosing
``s_j = max|x_j|^alpha / max|W_:,j|^(1 - alpha)`` flattens the outlier channels of ``x`` (which
a per-tensor activation quantizer handles badly) at the cost of wider weight columns (which the
per-channel weight quantizer absorbs). The ``1/s`` has to go somewhere; per site:

* ``qkv`` (Q/K/V, fed by the previous LayerNorm) and ``ffn_in`` (FFN intermediate, fed by the
  attention block's LayerNorm): folded into that LayerNorm's gamma and beta. In a post-LN
  encoder the same LayerNorm output is also the skip input of the next residual add, so that
  add gets the inverse back: its skip input is multiplied by ``s`` (a per-channel ``Mul`` in the
  ONNX graph, before the residual's Q/DQ). The final LayerNorm (the encoder output) is never a
  producer, so the model's outputs are untouched.
* ``attn_out`` (attention output projection, fed by probs.V): folded into the rows of the value
  projection; attention mixes tokens, not channels, so context channel c is V's channel c.
* ``ffn_out`` (FFN output projection, fed by GELU): GELU is not linear, so an explicit
  per-channel multiply before the input quantizer.

Scales live in buffers (``smooth_input_scale`` on a GEMM, ``smooth_residual_scale`` on a
residual block) applied by forward pre-hooks; the buffer's shape broadcasts against the tensor
((C,) for BERT's [B, T, C], (C, 1) for SqueezeBERT's [B, C, T]), so checkpoints reload them with
`restore_smoothing` and the TorchScript exporter records them as plain ``Mul`` nodes.
In float the smoothed model computes what the original does (tested to 1e-5 on both
architectures). Intermediate ``hidden_states`` outputs of smoothed layers are scaled per
channel; the model's final outputs are not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from qtoolkit.errors import QtoolError

__all__ = [
    "INPUT_SCALE",
    "RESIDUAL_SCALE",
    "SITES",
    "SmoothSite",
    "apply_smoothquant",
    "collect_input_absmax",
    "quantizers_off",
    "restore_smoothing",
    "smooth_from_config",
    "smooth_sites",
]

INPUT_SCALE = "smooth_input_scale"
RESIDUAL_SCALE = "smooth_residual_scale"
SITES = ("qkv", "ffn_in", "attn_out", "ffn_out")
_MIN_SCALE = 1e-5


@dataclass
class SmoothSite:
    """GEMMs sharing one input, and where their `1/s` goes: a LayerNorm (`producer` with
    `residual` compensated), a projection's rows (`producer` a Linear/Conv1d), or explicit."""

    kind: str
    consumers: list[str]
    producer: str | None = None
    residual: str | None = None
    channels_first: bool = False  # SqueezeBERT: [B, C, T]
    scale: torch.Tensor | None = field(default=None, repr=False)


def _encoder_layout(model: nn.Module) -> tuple[str, str, list[str], dict[str, str]]:
    """(embeddings LayerNorm, architecture, layer prefixes, names within a layer)."""
    arch = model.config.model_type
    if arch == "bert":
        base, layers = model.base_model_prefix, "encoder.layer"
        names = {
            "q": "attention.self.query",
            "k": "attention.self.key",
            "v": "attention.self.value",
            "attn_block": "attention.output",
            "attn_dense": "attention.output.dense",
            "attn_ln": "attention.output.LayerNorm",
            "inter": "intermediate.dense",
            "out_block": "output",
            "out_dense": "output.dense",
            "out_ln": "output.LayerNorm",
        }
    elif arch == "squeezebert":
        base, layers = model.base_model_prefix, "encoder.layers"
        names = {
            "q": "attention.query",
            "k": "attention.key",
            "v": "attention.value",
            "attn_block": "post_attention",
            "attn_dense": "post_attention.conv1d",
            "attn_ln": "post_attention.layernorm",
            "inter": "intermediate.conv1d",
            "out_block": "output",
            "out_dense": "output.conv1d",
            "out_ln": "output.layernorm",
        }
    else:
        raise QtoolError(f"SmoothQuant supports bert and squeezebert, not '{arch}'")
    base_module = getattr(model, base, model)
    prefix = f"{base}." if base_module is not model else ""
    count = len(base_module.get_submodule(layers))
    return (
        f"{prefix}embeddings.LayerNorm",
        arch,
        [f"{prefix}{layers}.{i}." for i in range(count)],
        names,
    )


def smooth_sites(model: nn.Module, kinds: list[str] | tuple[str, ...] = SITES) -> list[SmoothSite]:
    """Every smoothing site of an encoder, per layer, for the requested `kinds`."""
    unknown = [k for k in kinds if k not in SITES]
    if unknown:
        raise QtoolError(f"quant.smoothquant.sites: unknown {unknown} (known: {', '.join(SITES)})")
    emb_ln, arch, layers, n = _encoder_layout(model)
    cf = arch == "squeezebert"
    sites = []
    previous_ln = emb_ln
    for p in layers:
        if "qkv" in kinds:
            sites.append(
                SmoothSite(
                    "qkv",
                    [p + n["q"], p + n["k"], p + n["v"]],
                    previous_ln,
                    p + n["attn_block"],
                    cf,
                )
            )
        if "ffn_in" in kinds:
            sites.append(
                SmoothSite("ffn_in", [p + n["inter"]], p + n["attn_ln"], p + n["out_block"], cf)
            )
        if "attn_out" in kinds:
            sites.append(SmoothSite("attn_out", [p + n["attn_dense"]], p + n["v"], None, cf))
        if "ffn_out" in kinds:
            sites.append(SmoothSite("ffn_out", [p + n["out_dense"]], None, None, cf))
        previous_ln = p + n["out_ln"]
    return sites


@contextlib.contextmanager
def quantizers_off(model: nn.Module) -> Iterator[None]:
    """Every enabled quantizer switched off inside the block (float statistics), then back on."""
    from qtoolkit.quant.insert import iter_quantizers

    enabled = [q for _, q in iter_quantizers(model) if not q._disabled]
    for q in enabled:
        q.disable()
    try:
        yield
    finally:
        for q in enabled:
            q.enable()


def _channel_absmax(x: torch.Tensor, channels_first: bool) -> torch.Tensor:
    dim = 1 if channels_first and x.dim() == 3 else -1
    return x.detach().abs().transpose(dim, -1).reshape(-1, x.shape[dim]).amax(dim=0).float()


def collect_input_absmax(
    model: nn.Module, sites: list[SmoothSite], forward_loop: Callable[[nn.Module], None]
) -> dict[str, torch.Tensor]:
    """Per-input-channel max |x| of each site's (first) consumer, in float, over the loop."""
    stats: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(name: str, channels_first: bool):
        def hook(module, args):
            m = _channel_absmax(args[0], channels_first)
            stats[name] = m if name not in stats else torch.maximum(stats[name], m)

        return hook

    for site in sites:
        name = site.consumers[0]
        handles.append(
            model.get_submodule(name).register_forward_pre_hook(hook_for(name, site.channels_first))
        )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), quantizers_off(model):
            forward_loop(model)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return stats


def _weight_by_input(module: nn.Module) -> torch.Tensor:
    """A view of the weight as [groups, out_per_group, in_per_group]: input channel j of a
    grouped conv is column j % in_per_group of group j // in_per_group."""
    w = module.weight
    groups = getattr(module, "groups", 1)
    return w.view(groups, w.shape[0] // groups, -1)


def _weight_column_absmax(module: nn.Module) -> torch.Tensor:
    return _weight_by_input(module).detach().abs().amax(dim=1).reshape(-1).float()


def _scale_shape(scale: torch.Tensor, channels_first: bool) -> torch.Tensor:
    return scale.reshape(-1, 1) if channels_first else scale.reshape(-1)


def _multiply_input(module, args, kwargs):
    scale = getattr(module, INPUT_SCALE)
    return (args[0] * scale, *args[1:]), kwargs


def _multiply_residual(module, args, kwargs):
    scale = getattr(module, RESIDUAL_SCALE)
    if len(args) > 1:
        return (args[0], args[1] * scale, *args[2:]), kwargs
    kwargs = dict(kwargs)
    kwargs["input_tensor"] = kwargs["input_tensor"] * scale
    return args, kwargs


def _attach(module: nn.Module, buffer: str, value: torch.Tensor) -> None:
    """Set (or compose with) a scale buffer and its pre-hook on `module`."""
    hook = _multiply_input if buffer == INPUT_SCALE else _multiply_residual
    if hasattr(module, buffer):
        getattr(module, buffer).mul_(value.to(getattr(module, buffer).device))
        return
    module.register_buffer(buffer, value.clone())
    module.register_forward_pre_hook(hook, with_kwargs=True)


def _smooth_site(model: nn.Module, site: SmoothSite, absmax: torch.Tensor, alpha: float) -> None:
    consumers = [model.get_submodule(c) for c in site.consumers]
    w_max = torch.stack([_weight_column_absmax(m) for m in consumers]).amax(dim=0)
    x_max = absmax.to(w_max.device)
    scale = (x_max.clamp(min=_MIN_SCALE) ** alpha) / (w_max.clamp(min=_MIN_SCALE) ** (1 - alpha))
    # A channel that never fired (or a zero column) keeps scale 1: nothing to migrate.
    scale = torch.where((x_max > 0) & (w_max > 0), scale, torch.ones_like(scale))
    scale = scale.clamp(min=_MIN_SCALE)
    site.scale = scale
    with torch.no_grad():
        for m in consumers:
            view = _weight_by_input(m)
            groups = view.shape[0]
            view.mul_(scale.to(view.device, view.dtype).view(groups, 1, -1))
        if site.producer is None:
            for m in consumers:
                _attach(m, INPUT_SCALE, _scale_shape(1.0 / scale, site.channels_first))
            return
        producer = model.get_submodule(site.producer)
        inv = (1.0 / scale).to(producer.weight.device, producer.weight.dtype)
        if isinstance(producer, nn.LayerNorm):
            producer.weight.mul_(inv)
            producer.bias.mul_(inv)
            block = model.get_submodule(site.residual)
            _attach(block, RESIDUAL_SCALE, _scale_shape(scale, site.channels_first))
        else:  # the value projection: its output channel c is the consumer's input channel c
            producer.weight.view(producer.weight.shape[0], -1).mul_(inv.view(-1, 1))
            if producer.bias is not None:
                producer.bias.mul_(inv)


def apply_smoothquant(
    model: nn.Module,
    forward_loop: Callable[[nn.Module], None],
    alpha: float = 0.5,
    kinds: list[str] | tuple[str, ...] = SITES,
    stats: dict[str, torch.Tensor] | None = None,
) -> list[SmoothSite]:
    """Smooth `model` in place (float statistics from `forward_loop`); returns the sites with
    their scales. Run it after `insert_quantizers` and before calibration. `stats` (from
    `collect_input_absmax` on an unsmoothed copy of the model) saves the statistics pass when
    several alphas are tried."""
    if not 0.0 <= alpha <= 1.0:
        raise QtoolError(f"quant.smoothquant.alpha must be in [0, 1], got {alpha}")
    sites = smooth_sites(model, kinds)
    if stats is None:
        stats = collect_input_absmax(model, sites, forward_loop)
    missing = [s.consumers[0] for s in sites if s.consumers[0] not in stats]
    if missing:
        raise QtoolError(f"SmoothQuant: no data reached {missing[:2]}")
    # Statistics first, then every site: scaling one site does not change another's input
    # in float (that is what exactness means), so the order of sites does not matter.
    for site in sites:
        _smooth_site(model, site, stats[site.consumers[0]], alpha)
    return sites


def restore_smoothing(model: nn.Module, shapes: dict[str, torch.Size]) -> int:
    """Recreate the scale buffers (values come with the state dict) and their hooks from
    checkpoint keys like `<module>.smooth_input_scale`. Returns how many were restored."""
    count = 0
    for key, shape in shapes.items():
        module_name, _, buffer = key.rpartition(".")
        if buffer not in (INPUT_SCALE, RESIDUAL_SCALE):
            continue
        _attach(model.get_submodule(module_name), buffer, torch.ones(shape))
        count += 1
    return count


def smooth_from_config(model: nn.Module, quant_cfg, forward_loop) -> list[SmoothSite]:
    """`apply_smoothquant` with the recipe's `quant.smoothquant` (nothing when it is unset);
    a list of alphas (searched by qtool autoquant) means its first here."""
    sq = getattr(quant_cfg, "smoothquant", None)
    if sq is None:
        return []
    alpha = sq.alpha[0] if isinstance(sq.alpha, list) else sq.alpha
    return apply_smoothquant(model, forward_loop, alpha, sq.sites)
