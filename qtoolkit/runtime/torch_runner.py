"""PyTorch (fp32 or fake-quant) as a backend: batch of tensors in, named numpy arrays out."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["TorchRunner"]


class TorchRunner:
    backend = "torch"

    def __init__(self, model: torch.nn.Module, output_names: tuple[str, ...], device: str = "cpu"):
        self.model = model.to(device).eval()
        self.output_names = output_names
        self.device = device

    @torch.no_grad()
    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        inputs = {k: torch.as_tensor(v).to(self.device) for k, v in batch.items()}
        out = self.model(**inputs)
        return {name: out[name].float().cpu().numpy() for name in self.output_names}
