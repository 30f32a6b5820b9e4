"""Backends that run a model on a batch and return named numpy outputs."""

from qtoolkit.runtime.ort_runner import OrtRunner
from qtoolkit.runtime.torch_runner import TorchRunner

__all__ = ["OrtRunner", "TorchRunner"]
