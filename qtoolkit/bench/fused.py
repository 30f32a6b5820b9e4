"""The fp32 baseline's second candidate: the same ONNX graph fused by ONNX Runtime's transformer
optimizer (`onnxruntime.transformers.optimizer`, model_type bert: Attention, SkipLayerNorm,
BiasGelu ... fusions).

Those fusions can make a float graph faster or slower depending on the CPU and thread count
(on a 2-core machine with 2 threads they made MiniLM slower), so the benchmark times both and
takes the faster at each shape as the baseline a speed-up is measured against.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from qtoolkit.errors import QtoolError

__all__ = ["FUSED_SUFFIX", "fuse_bert_graph", "fused_copy"]

FUSED_SUFFIX = "-fused"


def fuse_bert_graph(src: str | Path, dst: str | Path) -> Path:
    """Write `src` fused by ORT's bert optimizer to `dst` (heads and hidden size detected from
    the graph; ORT's own graph optimizations are left to the session, as for the raw graph)."""
    try:
        from onnxruntime.transformers import optimizer
    except ImportError as exc:  # pragma: no cover - part of the onnxruntime wheel
        raise QtoolError(f"onnxruntime.transformers is not available: {exc}") from None
    try:
        model = optimizer.optimize_model(
            str(src), model_type="bert", num_heads=0, hidden_size=0, opt_level=0
        )
        model.save_model_to_file(str(dst))
    except Exception as exc:  # the optimizer raises anything from a graph it cannot match
        raise QtoolError(
            f"onnxruntime.transformers.optimizer could not fuse {src}: {type(exc).__name__}: {exc}"
        ) from None
    return Path(dst)


def fused_copy(onnx_path: Path, folder: Path) -> Path:
    """`onnx_path` fused into `folder`, with the export folder's config and tokenizer files
    beside it so the benchmark opens it like the original."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in onnx_path.parent.iterdir():
        if f.is_file() and f.suffix not in (".onnx", ".data") and not f.name.startswith("."):
            shutil.copy2(f, folder / f.name)
    return fuse_bert_graph(onnx_path, folder / onnx_path.name)
