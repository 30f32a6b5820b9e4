"""QDQBERT checkpoints (`model_type: qdqbert`): recognising them and reading their config.

The importer that builds qtool's quantized BERT from one is `qtoolkit.quant.qdqbert_import`.

QDQBERT was removed from transformers, but its checkpoints are plain BERT weights plus one
`_amax` buffer per calibrated `TensorQuantizer`, under names qtool uses too:

* `bert.encoder.layer.N.attention.self.{query,key,value}._{input,weight}_quantizer._amax`
  (every encoder `QuantLinear`; pooler and task heads are float `nn.Linear`s in QDQBERT);
* `bert.encoder.layer.N.attention.self.matmul_{q,k,v,a}_input_quantizer._amax`;
* `bert.encoder.layer.N.{attention.output,output}.add_{local,residual}_input_quantizer._amax`
  (both inputs of each residual add: qtool's `residual_inputs: both`).

So the importer builds the transformers BERT with the same head, inserts qtool's quantizers
with QDQBERT's placement and loads the state dict as it is. What does not line up is reported:
an `_amax` with no qtool quantizer (dropped) and a qtool quantizer the checkpoint left
uncalibrated (disabled, so the model stays exportable; `qtool calibrate` fills it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qtoolkit.errors import QtoolError

__all__ = [
    "QDQBERT_MODEL_TYPE",
    "is_qdqbert_checkpoint",
    "qdqbert_bert_config",
    "qdqbert_manifest",
    "qdqbert_task",
]

QDQBERT_MODEL_TYPE = "qdqbert"
_PREFIX = "QDQBert"
# QDQBERT classes with no BERT-encoder task in qtool, and why.
_REFUSED = {
    "QDQBertLMHeadModel": "a causal (decoder) LM head; qtool quantizes encoders only",
    "QDQBertModel": "a bare encoder without a task head",
}


def _read_config(path: Path) -> dict[str, Any]:
    config_path = path / "config.json"
    try:
        return json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def is_qdqbert_checkpoint(path: str | Path) -> bool:
    return _read_config(Path(path)).get("model_type") == QDQBERT_MODEL_TYPE


def qdqbert_bert_config(path: str | Path):
    """The `BertConfig` of a QDQBERT checkpoint (QDQBertConfig added no fields to BERT's)."""
    from transformers import BertConfig

    raw = _read_config(Path(path))
    raw = {k: v for k, v in raw.items() if k not in ("model_type", "transformers_version")}
    if raw.get("is_decoder") or raw.get("add_cross_attention"):
        raise QtoolError(
            f"{path}: a QDQBERT decoder (is_decoder/add_cross_attention); qtool quantizes encoders"
        )
    raw["architectures"] = [a.replace(_PREFIX, "Bert", 1) for a in raw.get("architectures") or []]
    return BertConfig.from_dict(raw)


def qdqbert_task(path: str | Path) -> str | None:
    """The task of the checkpoint's head, from `architectures` (None when it names none)."""
    from qtoolkit.models.registry import HEAD_SUFFIX

    for arch in _read_config(Path(path)).get("architectures") or []:
        if arch in _REFUSED:
            raise QtoolError(f"{path} is a {arch}: {_REFUSED[arch]}")
        for task, suffix in HEAD_SUFFIX.items():
            if arch == _PREFIX + suffix:
                return task
    return None


def qdqbert_manifest(path: str | Path) -> dict[str, Any]:
    """What `read_manifest` reports for a QDQBERT folder (no weights read)."""
    return {
        "format": "qtoolkit-quantized",
        "source_format": QDQBERT_MODEL_TYPE,
        "architecture": "bert",
        "task": qdqbert_task(path),
        "stage": "qdqbert-import",
    }
