"""`qtool inspect`: every quantizer of a quantized checkpoint, with the amax its weights hold.

The checkpoint is loaded as `evaluate` and `export-onnx` load it, so what inspect shows is what
they would use: a missing or foreign config.json, a missing or corrupt weights file and a NaN
amax are refused here too. amax.json (the copy for people and scripts) is checked as well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

__all__ = ["QuantizerListing", "list_quantizers"]


@dataclass
class QuantizerListing:
    checkpoint: Path
    architecture: str
    task: str
    records: list[dict[str, Any]]  # amax.json records, filtered by the pattern

    def summary(self) -> Any:
        """A rich table: quantizer, kind, amax, on/off."""
        from rich.table import Table

        from qtoolkit.quant.report import amax_cell

        table = Table(title=f"{self.checkpoint} ({self.architecture}, {self.task})")
        for col in ("quantizer", "kind", "amax", "state"):
            table.add_column(col)
        for rec in self.records:
            state = "on" if rec["enabled"] else "off"
            table.add_row(rec["name"], rec["kind"], amax_cell(rec), state)
        return table


def list_quantizers(checkpoint: Path, pattern: str | None = None) -> QuantizerListing:
    """The quantizers of `checkpoint` (a calibrated or QAT folder, or a QDQBERT one) matching
    fnmatch `pattern`, with the amax values its weights hold."""
    from qtoolkit.quant import load_quantized
    from qtoolkit.quant.checkpoint import read_manifest
    from qtoolkit.quant.report import amax_records

    manifest = read_manifest(checkpoint)
    if manifest.get("source_format") != "qdqbert":  # QDQBERT folders have no amax.json
        _check_amax_table(checkpoint)
    ckpt = load_quantized(checkpoint)
    records = amax_records(ckpt.model)
    if pattern:
        records = [r for r in records if fnmatchcase(r["name"], pattern)]
    return QuantizerListing(
        checkpoint, ckpt.manifest["architecture"], ckpt.manifest["task"], records
    )


def _check_amax_table(checkpoint: Path) -> None:
    """amax.json must be there and readable (a corrupt copy is named, not shown)."""
    from qtoolkit.artifacts import AMAX_JSON
    from qtoolkit.errors import QtoolError
    from qtoolkit.textfiles import read_utf8

    path = checkpoint / AMAX_JSON
    if not path.is_file():
        raise QtoolError(f"{path} is missing; the checkpoint is incomplete (save it again)")
    try:
        records = json.loads(read_utf8(path))
    except json.JSONDecodeError as exc:
        records, where = None, f":{exc.lineno}"
    else:
        where = ""
    fields = ("name", "kind", "enabled")
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and all(f in r for f in fields) for r in records
    ):
        raise QtoolError(
            f"{path}{where}: corrupt amax table; the weights file holds every amax, so re-run "
            "qtool calibrate (or restore the file)"
        )
