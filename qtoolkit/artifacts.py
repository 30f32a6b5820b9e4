"""What qtool writes: artifact kinds, their marker file, standard file names and the write rules.

Every folder qtool writes holds a manifest, `qtoolkit.json`, whose `format` names its kind. This
module alone knows that file, the kinds, the standard file names inside each kind, how to read
and write a manifest, what a user's path is ("an ONNX export? a quantized checkpoint?"), and the
rules for replacing an output:

* a folder is replaced only if it is empty or qtool wrote it as the same kind of output;
* a folder qtool wrote is not replaced while it holds files qtool did not write there;
* an output is never an input, never inside an input's folder, and never holds an input;
* a single output file (metrics JSON) is written only where no file is, or over one of its kind;
* an output is never on a virtual file system (/proc, /sys) and never behind a link loop;
* what a killed qtool run left behind (`fsutil.is_leftover`) is qtool's own: removed, never a
  reason to refuse;
* an artifact written in steps (QAT saves its best epoch while it trains) says so in its
  manifest (`incomplete`) until it is finished, and is refused as an input until then.

The checks run before the work starts, so a refusal costs nothing.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtoolkit.errors import QtoolError
from qtoolkit.fsutil import (
    atomic_dir,
    carry_over,
    files_under,
    is_leftover,
    resolved,
    virtual_file_system,
    write_json,
)

if TYPE_CHECKING:
    from qtoolkit.recipe import ModelConfig, Recipe

__all__ = [
    "AMAX_JSON",
    "AMAX_MD",
    "ENGINE_FILE",
    "EXPORT_FILE",
    "INCOMPLETE",
    "MARKER",
    "OPENVINO_FILE",
    "QUANTIZED_SUBDIR",
    "WEIGHTS",
    "Kind",
    "add_files",
    "check_not_inputs",
    "check_output_dir",
    "check_output_file",
    "mark_complete",
    "finetuned_source",
    "fp32_path_for",
    "identify",
    "kind_of",
    "new_manifest",
    "record_files",
    "quantized_source",
    "read_manifest",
    "try_read_manifest",
    "write_manifest",
    "writing_dir",
]

# A folder holding this file was written by qtool; its `format` says what it is.
MARKER = "qtoolkit.json"

# Standard file names.
WEIGHTS = "model.safetensors"  # quantized checkpoint weights and every amax
AMAX_JSON = "amax.json"
AMAX_MD = "amax.md"
EXPORT_FILE = "model.onnx"  # inside the export stage folder
ENGINE_FILE = "model.engine"  # inside the engine stage folder
QUANTIZED_SUBDIR = "checkpoint"  # the quantized checkpoint inside a `qtool quantize` folder
OPENVINO_FILE = "model.xml"  # OpenVINO IR (with model.bin), inside an OpenVINO folder
_FP32_SUFFIX = ".fp32"  # model.onnx -> model.fp32.onnx, the float baseline export


class Kind(StrEnum):
    """Artifact kinds, as the manifest's `format` spells them."""

    FLOAT = "qtoolkit-float"  # fine-tuned fp32 Hugging Face checkpoint
    QUANTIZED = "qtoolkit-quantized"  # calibrated or QAT checkpoint
    ONNX = "qtoolkit-onnx"  # export folder: model.onnx (+ fp32), tokenizer, config
    DATASET = "qtoolkit-dataset"
    BENCH = "qtoolkit-bench"
    METRICS = "qtoolkit-metrics"  # a single JSON file (evaluate / sensitivity -o)
    OPENVINO = "qtoolkit-openvino"  # build-engine --runtime openvino: IR, tokenizer, config
    REPORT = "qtoolkit-report"  # ptq-sweep / autoquant results.{json,md}


_DESCRIPTION = {
    Kind.FLOAT: "fine-tuned fp32 checkpoint",
    Kind.QUANTIZED: "quantized checkpoint",
    Kind.ONNX: "ONNX export",
    Kind.DATASET: "dataset",
    Kind.BENCH: "benchmark report",
    Kind.METRICS: "metrics file",
    Kind.OPENVINO: "OpenVINO model",
    Kind.REPORT: "report folder",
}

# Manifest field of an artifact still being written in steps: what finishes it.
INCOMPLETE = "incomplete"


def fp32_path_for(path: str | Path) -> Path:
    """Where the float baseline of an export goes: model.onnx -> model.fp32.onnx."""
    path = Path(path)
    return path.with_name(path.stem + _FP32_SUFFIX + path.suffix)


# --- manifests -------------------------------------------------------------------------------


def try_read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of `folder`, or None when it has none. A corrupt one is an error."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QtoolError(f"{path}: unreadable qtool manifest ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise QtoolError(f"{path}: a qtool manifest must be a JSON object")
    return data


def kind_of(folder: str | Path) -> Kind | None:
    """The kind of a folder qtool wrote, or None (not a folder, no manifest, unknown format)."""
    if not Path(folder).is_dir():
        return None
    manifest = try_read_manifest(folder)
    fmt = manifest.get("format") if manifest else None
    return Kind(fmt) if fmt in Kind._value2member_map_ else None


def read_manifest(folder: str | Path, expect: Kind) -> dict[str, Any]:
    """The manifest of a folder that must be of kind `expect`; one line if it is not."""
    folder = Path(folder)
    if not folder.is_dir():
        raise QtoolError(f"{_DESCRIPTION[expect]} not found: {folder}")
    manifest = try_read_manifest(folder)
    if manifest is None:
        raise QtoolError(f"{folder} is not a qtoolkit {_DESCRIPTION[expect]} (no {MARKER})")
    if manifest.get("format") != expect:
        found = kind_of(folder)
        what = _DESCRIPTION[found] if found else f"'{manifest.get('format')}'"
        raise QtoolError(f"{folder} is a qtoolkit {what}, not a {_DESCRIPTION[expect]}")
    if manifest.get(INCOMPLETE):
        raise QtoolError(
            f"{folder} is an unfinished {_DESCRIPTION[expect]}: {manifest[INCOMPLETE]}"
        )
    return manifest


def new_manifest(kind: Kind, **fields: Any) -> dict[str, Any]:
    from qtoolkit.version import __version__

    return {
        "format": str(kind),
        "qtoolkit_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **fields,
    }


def write_manifest(folder: str | Path, kind: Kind, **fields: Any) -> Path:
    """Write `folder`'s manifest (atomically); `fields` go next to format/version/date."""
    path = Path(folder) / MARKER
    write_json(path, new_manifest(kind, **fields))
    return path


def mark_complete(folder: str | Path, **fields: Any) -> None:
    """Drop the `incomplete` mark of `folder`'s manifest (adding `fields`): it is finished."""
    folder = Path(folder)
    manifest = try_read_manifest(folder)
    if manifest is None:
        return
    manifest.pop(INCOMPLETE, None)
    write_json(folder / MARKER, {**manifest, **fields})


def record_files(folder: Path) -> None:
    """List every file of `folder` in its manifest, so a later run can tell a user's own files
    (which it must not delete) from the ones qtool wrote."""
    manifest = try_read_manifest(folder)
    if manifest is None:
        return
    files = sorted(str(p.relative_to(folder)) for p in files_under(folder))
    write_json(folder / MARKER, {**manifest, "files": files})


def add_files(folder: Path, names: Iterable[str]) -> None:
    """Add files written into `folder` after its manifest (e.g. `qtool run`'s stamp) to the
    manifest's list, so they count as qtool's own when the folder is replaced."""
    manifest = try_read_manifest(folder)
    if manifest is None or manifest.get("files") is None:
        return
    files = sorted({*manifest["files"], *names})
    write_json(folder / MARKER, {**manifest, "files": files})


# --- what is this path? ----------------------------------------------------------------------


def identify(path: str | Path) -> str:
    """What a user's path is: 'engine', 'onnx', 'quantized-checkpoint', 'float-checkpoint'
    (a qtool fine-tune or any Hugging Face folder with config.json), 'dataset', 'bench',
    'onnx-export-folder', 'openvino' (an IR .xml), 'openvino-folder', 'missing' or 'other'."""
    path = Path(path)
    if not path.exists():
        return "missing"
    if path.is_file():
        if path.suffix in (".engine", ".plan"):
            return "engine"
        return {".onnx": "onnx", ".xml": "openvino"}.get(path.suffix, "other")
    kind = kind_of(path)
    by_kind = {
        Kind.QUANTIZED: "quantized-checkpoint",
        Kind.FLOAT: "float-checkpoint",
        Kind.DATASET: "dataset",
        Kind.BENCH: "bench",
        Kind.ONNX: "onnx-export-folder",
        Kind.OPENVINO: "openvino-folder",
    }
    if kind in by_kind:
        return by_kind[kind]
    return "float-checkpoint" if (path / "config.json").is_file() else "other"


# --- a recipe's stage outputs -----------------------------------------------------------------


def finetuned_source(recipe: Recipe) -> tuple[ModelConfig, list[str]]:
    """The model the quantization stages start from: the recipe's fine-tuned checkpoint when
    that stage has run, else `model.path`; with a notice saying which."""
    finetuned = recipe.stage_dir("finetuned")
    if kind_of(finetuned) is Kind.FLOAT:
        cfg = recipe.model.model_copy(update={"path": str(finetuned), "random_init": False})
        return cfg, [f"using the fine-tuned checkpoint {finetuned}"]
    return recipe.model, []


def quantized_source(recipe: Recipe) -> Path | None:
    """The recipe's QAT checkpoint if `qtool qat` has run, else its calibrated one, else None."""
    for stage in ("qat", "calibrated"):
        folder = recipe.stage_dir(stage)
        if kind_of(folder) is Kind.QUANTIZED:
            return folder
    return None


# --- write rules ------------------------------------------------------------------------------


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_not_inputs(target: Path, inputs: Iterable[str | Path | None], is_dir: bool) -> None:
    """An output must not be an input, lie inside an input folder or (a folder) hold one."""
    target = resolved(target)
    for item in inputs:
        if item is None or not Path(item).exists():
            continue
        source = resolved(Path(item), "input")
        if target == source or (source.is_dir() and _inside(target, source)):
            raise QtoolError(
                f"output {target} would overwrite the input {item}; choose another output"
            )
        if is_dir and _inside(source, target):
            raise QtoolError(
                f"output {target} holds the input {item} and would delete it; choose another output"
            )


def _check_writable(target: Path) -> None:
    """The output's nearest existing folder must be writable (a read-only disk, a folder without
    permission) and hold files (not /proc or /sys): found now, not after the work."""
    import os

    real = resolved(target)
    folder = real.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    fs = virtual_file_system(real)
    if fs is not None:
        raise QtoolError(
            f"output {target} is on the kernel's {fs} file system, which holds no files; "
            "write somewhere else"
        )
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise QtoolError(
            f"output {target}: {folder} is not writable (read-only file system or no "
            "permission); write somewhere else"
        )


def check_not_inputs(target: str | Path, inputs: Iterable[str | Path | None]) -> None:
    """An output folder that is not an artifact (e.g. a report folder) must still not be, hold
    or lie inside an input."""
    _check_not_inputs(Path(target), inputs, is_dir=True)


def check_output_dir(
    target: str | Path, kind: Kind, inputs: Iterable[str | Path | None] = ()
) -> None:
    """Refuse, before any work, an output folder that would destroy something."""
    target = Path(target)
    _check_not_inputs(target, inputs, is_dir=True)
    _check_writable(target)
    if not target.exists():
        return
    if not target.is_dir():
        raise QtoolError(f"output {target} exists and is not a directory; choose another")
    if not files_under(target) and not any(
        p.is_dir() and not is_leftover(p) for p in target.iterdir()
    ):
        return  # empty, or only what a killed qtool run left
    found = kind_of(target)
    if found is None:
        raise QtoolError(f"output {target} exists and was not written by qtool; choose another")
    if found is not kind:
        raise QtoolError(
            f"output {target} is a qtoolkit {_DESCRIPTION[found]}, not a {_DESCRIPTION[kind]}; "
            "choose another output"
        )
    listed = (try_read_manifest(target) or {}).get("files")
    if listed is not None:
        foreign = sorted(
            str(p.relative_to(target))
            for p in files_under(target)
            if str(p.relative_to(target)) not in listed and p.name != MARKER
        )
        if foreign:
            raise QtoolError(
                f"output {target} holds files qtool did not write ({', '.join(foreign[:3])}); "
                "move them or choose another output"
            )


@contextlib.contextmanager
def writing_dir(
    target: str | Path,
    kind: Kind,
    inputs: Iterable[str | Path | None] = (),
    keep_others: bool = False,
) -> Iterator[Path]:
    """Check the rules, then yield a temporary folder that replaces `target` on success.

    The block writes the manifest (`write_manifest`); the files it wrote are recorded in it.
    `keep_others`: the old folder's other files stay (an export next to other exports).
    """
    check_output_dir(target, kind, inputs)
    with atomic_dir(target) as tmp:
        yield tmp
        if keep_others and Path(target).is_dir():
            carry_over(target, tmp)
        record_files(tmp)


def check_output_file(
    target: str | Path, kind: Kind, inputs: Iterable[str | Path | None] = ()
) -> None:
    """A single output file may be new, or replace a file of its own kind; never an input."""
    target = Path(target)
    _check_not_inputs(target, inputs, is_dir=False)
    _check_writable(target)
    if target.is_dir():
        raise QtoolError(f"output {target} is a directory; give a file name")
    parent_kind = kind_of(target.parent)
    if parent_kind not in (None, Kind.BENCH) and not target.exists():
        raise QtoolError(
            f"output {target} is inside a qtoolkit {_DESCRIPTION[parent_kind]}; "
            "choose another folder"
        )
    if not target.exists():
        return
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict) or data.get("format") != kind:
        raise QtoolError(
            f"output {target} exists and is not a qtoolkit {_DESCRIPTION[kind]}; choose another"
        )
