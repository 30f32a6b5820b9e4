"""Writing ONNX files atomically, with external data when the model is over protobuf's 2 GB."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import onnx

__all__ = ["PROTOBUF_LIMIT", "external_data_path", "move_onnx", "tensor_bytes", "write_onnx"]

# Protobuf refuses to serialize a message of 2 GiB or more.
PROTOBUF_LIMIT = 2**31 - 1
# Leave headroom for the graph itself (node names, attributes) next to the weights.
_HEADROOM = 64 * 2**20


def tensor_bytes(model: onnx.ModelProto) -> int:
    """Bytes of initializer and Constant-node tensor data held in the model."""
    total = 0
    for t in model.graph.initializer:
        total += len(t.raw_data) or t.ByteSize()
    for node in model.graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                total += len(a.t.raw_data) or a.t.ByteSize()
    return total


def external_data_path(path: str | Path) -> Path:
    """Where the weights of `path` go when it is saved with external data."""
    path = Path(path)
    return path.with_name(path.name + ".data")


def write_onnx(
    model: onnx.ModelProto,
    path: str | Path,
    external_threshold: int = PROTOBUF_LIMIT - _HEADROOM,
) -> Path:
    """Save `model` to `path` so that a reader never sees a half-written file.

    The model is written into a temporary folder next to `path` and renamed into place; with
    external data (tensor bytes over `external_threshold`) the weights file
    (`<name>.onnx.data`) is moved first and the `.onnx` that refers to it last.
    """
    from qtoolkit.fsutil import temp_dir_beside

    path = Path(path)
    external = tensor_bytes(model) > external_threshold
    data_path = external_data_path(path)
    tmp_dir = temp_dir_beside(path)
    try:
        tmp_model = tmp_dir / path.name
        if external:
            # Work on a copy: converting to external data rewrites the tensors in place.
            model = _copy(model)
            onnx.save_model(
                model,
                str(tmp_model),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data_path.name,
                size_threshold=1024,
            )
            os.replace(tmp_dir / data_path.name, data_path)
        else:
            onnx.save_model(model, str(tmp_model))
        os.replace(tmp_model, path)
        if not external:
            data_path.unlink(missing_ok=True)  # a stale weights file from an earlier export
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def move_onnx(src: str | Path, dst: str | Path) -> Path:
    """Move an ONNX file (and its `.data` weights, if any) to `dst`, the `.onnx` last."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    src_data = external_data_path(src)
    has_data = src_data.exists()
    if has_data:
        if src_data.name != external_data_path(dst).name:
            raise ValueError("external data is referenced by name; keep the file name when moving")
        os.replace(src_data, external_data_path(dst))
    os.replace(src, dst)
    if not has_data:
        external_data_path(dst).unlink(missing_ok=True)  # stale weights of an earlier export
    return dst
