"""pytorch-quantization descriptors built from a QuantConfig."""

from __future__ import annotations

from qtoolkit.recipe import QuantConfig

__all__ = ["input_descriptor", "weight_descriptor", "new_input_quantizer"]


def input_descriptor(cfg: QuantConfig):
    """Activations: per tensor, signed, full int8 range."""
    from pytorch_quantization.tensor_quant import QuantDescriptor

    return QuantDescriptor(num_bits=cfg.num_bits, axis=None)


def weight_descriptor(cfg: QuantConfig):
    """Weights: per output channel (axis 0 of a torch Linear or Conv weight) unless turned off."""
    from pytorch_quantization.tensor_quant import QuantDescriptor

    return QuantDescriptor(num_bits=cfg.num_bits, axis=(0,) if cfg.weight_per_channel else None)


def new_input_quantizer(cfg: QuantConfig):
    from pytorch_quantization.nn import TensorQuantizer

    return TensorQuantizer(input_descriptor(cfg))
