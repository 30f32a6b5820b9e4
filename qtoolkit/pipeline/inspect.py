"""`qtool inspect`: every quantizer of a quantized checkpoint, read from its amax.json."""

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
    """The quantizers of `checkpoint` (a calibrated or QAT folder) matching fnmatch `pattern`."""
    from qtoolkit.quant.checkpoint import read_manifest

    manifest = read_manifest(checkpoint)
    records = json.loads((checkpoint / "amax.json").read_text())
    if pattern:
        records = [r for r in records if fnmatchcase(r["name"], pattern)]
    return QuantizerListing(checkpoint, manifest["architecture"], manifest["task"], records)
