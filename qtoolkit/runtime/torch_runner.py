"""PyTorch (fp32, fp16 or fake-quant) as a runner: named inputs in, named numpy arrays out."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["TorchRunner"]

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _accepted_inputs(model: torch.nn.Module) -> list[str]:
    params = inspect.signature(model.forward).parameters
    return [n for n in _INPUTS if n in params] or list(_INPUTS)


def _is_fakequant(model: torch.nn.Module) -> bool:
    from pytorch_quantization.nn import TensorQuantizer

    return any(isinstance(m, TensorQuantizer) and not m._disabled for m in model.modules())


class TorchRunner:
    runtime = "torch"

    def __init__(
        self,
        model: torch.nn.Module,
        output_names: tuple[str, ...],
        device: str = "cpu",
        precision: str | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.output_names = output_names
        self.device = device
        self.input_names = _accepted_inputs(model)
        self._precision = precision

    @property
    def precision(self) -> str:
        # Read when asked: sensitivity switches quantizers off and on in the same model.
        if self._precision:
            return self._precision
        if _is_fakequant(self.model):
            return "fakequant"
        return "fp16" if next(self.model.parameters()).dtype == torch.float16 else "fp32"

    def _inputs(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return {
            k: torch.as_tensor(v).to(self.device) for k, v in batch.items() if k in self.input_names
        }

    @torch.no_grad()
    def __call__(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        out = self.model(**self._inputs(batch))
        return {name: out[name].float().cpu().numpy() for name in self.output_names}

    def prepare(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        inputs = self._inputs({k: torch.from_numpy(np.asarray(v)) for k, v in feeds.items()})
        sync = torch.cuda.synchronize if self.device == "cuda" else (lambda: None)

        def call() -> None:
            with torch.inference_mode():
                self.model(**inputs)
            sync()

        return call
