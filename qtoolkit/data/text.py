"""Text files of sentences (or sentence pairs), optionally labelled: JSONL, TSV or CSV.

* JSONL: one object per line with `text` (or `text_a` + `text_b` for pairs).
* TSV/CSV: a header row naming the columns (`text`, `sentence`, `sentence1`/`sentence2`,
  `text_a`/`text_b`, `question`/`context` are recognised), or no header and the text in the
  first column.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtoolkit.errors import QtoolError
from qtoolkit.textfiles import read_utf8

__all__ = ["TextExample", "read_data_examples", "read_text_examples"]

_FIRST_NAMES = ("text", "text_a", "sentence", "sentence1", "question")
_SECOND_NAMES = ("text_b", "sentence2", "context")


@dataclass(frozen=True)
class TextExample:
    text: str
    text_pair: str | None = None
    label: Any = None


def _pick(row: dict[str, Any], field: str | None, names: tuple[str, ...]) -> Any:
    if field is not None and field in row:
        return row[field]
    for name in names:
        if name in row:
            return row[name]
    return None


def _from_row(row: dict[str, Any], text_field: str, pair_field: str | None, label_field: str):
    text = _pick(row, text_field, _FIRST_NAMES)
    if text is None or str(text).strip() == "":
        return None
    pair = _pick(row, pair_field, _SECOND_NAMES)
    return TextExample(str(text), None if pair is None else str(pair), row.get(label_field))


def _missing_text(row: dict[str, Any], text_field: str) -> str:
    """Why a JSON row gave no text: the field is absent, or there but null or empty."""
    names = [n for n in (text_field, *_FIRST_NAMES) if n in row]
    if not names:
        return f"no '{text_field}' field"
    empty = "null" if row[names[0]] is None else "empty"
    return f"'{names[0]}' is {empty}; every row needs a text"


def read_text_examples(
    path: str | Path,
    *,
    text_field: str = "text",
    text_pair_field: str | None = None,
    label_field: str = "label",
    limit: int | None = None,
) -> list[TextExample]:
    """Read up to `limit` examples; raises QtoolError on a missing, unreadable or empty file."""
    path = Path(path)
    if not path.is_file():
        raise QtoolError(f"data file not found: {path}")
    if limit is not None and limit < 1:
        raise QtoolError(f"limit must be >= 1, not {limit}")
    suffix = path.suffix.lower()
    examples: list[TextExample] = []
    with io.StringIO(read_utf8(path), newline="") as f:
        if suffix in (".jsonl", ".json"):
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise QtoolError(f"{path}:{lineno}: not a JSON object") from None
                if not isinstance(row, dict):
                    raise QtoolError(f"{path}:{lineno}: expected a JSON object per line")
                ex = _from_row(row, text_field, text_pair_field, label_field)
                if ex is None:
                    raise QtoolError(f"{path}:{lineno}: {_missing_text(row, text_field)}")
                examples.append(ex)
                if limit is not None and len(examples) >= limit:
                    break
        elif suffix in (".tsv", ".csv", ".txt"):
            delimiter = "," if suffix == ".csv" else "\t"
            rows = list(csv.reader(f, delimiter=delimiter))
            rows = [r for r in rows if any(cell.strip() for cell in r)]
            if rows:
                known = {text_field, *_FIRST_NAMES, *_SECOND_NAMES}
                header = [c.strip() for c in rows[0]]
                if known.intersection(header):
                    body = [dict(zip(header, r, strict=False)) for r in rows[1:]]
                else:
                    body = [{text_field: r[0]} for r in rows]
                for row in body:
                    ex = _from_row(row, text_field, text_pair_field, label_field)
                    if ex is not None:
                        examples.append(ex)
                    if limit is not None and len(examples) >= limit:
                        break
        else:
            raise QtoolError(
                f"{path}: unsupported data format '{suffix}' (use .jsonl, .tsv or .csv)"
            )
    if not examples:
        raise QtoolError(f"{path} has no examples")
    return examples


def read_data_examples(path: str | Path, data_cfg, limit: int | None = None) -> list[TextExample]:
    """`read_text_examples` with the field names of a recipe's `data` section."""
    return read_text_examples(
        path,
        text_field=data_cfg.text_field,
        text_pair_field=data_cfg.text_pair_field,
        label_field=data_cfg.label_field,
        limit=limit,
    )
