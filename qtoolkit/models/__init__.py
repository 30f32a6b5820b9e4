"""Loading Hugging Face BERT-family checkpoints, with a per-architecture spec registry."""

from qtoolkit.models.loading import LoadedModel, load_model, resolve_model_ref
from qtoolkit.models.registry import ARCHITECTURES, ArchSpec, get_arch_spec, spec_for_config

__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "LoadedModel",
    "get_arch_spec",
    "load_model",
    "resolve_model_ref",
    "spec_for_config",
]
