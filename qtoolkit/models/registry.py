"""One small spec per supported architecture, registered by name.

Everything architecture-specific that is not quantizer placement lives here: which Hugging Face
`model_type` values map to it, which class implements each task head, and how closely an exported
ONNX model must match PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

from qtoolkit.errors import QtoolError

__all__ = ["ARCHITECTURES", "ArchSpec", "get_arch_spec", "spec_for_config", "HEAD_SUFFIX"]

# Task name -> suffix of the transformers class name, e.g. BertForSequenceClassification.
HEAD_SUFFIX = {
    "sequence-classification": "ForSequenceClassification",
    "question-answering": "ForQuestionAnswering",
    "token-classification": "ForTokenClassification",
    "masked-lm": "ForMaskedLM",
    "multiple-choice": "ForMultipleChoice",
    "next-sentence-prediction": "ForNextSentencePrediction",  # BERT only
}


@dataclass(frozen=True)
class ArchSpec:
    name: str
    model_types: tuple[str, ...]
    class_prefix: str
    # Max |onnx - torch| on logits accepted by export validation, for fake-quant models. torch
    # and ONNX Runtime can round a value one quantization step apart and the difference grows
    # through the layers: a fine-tuned MiniLM measured 0.08-0.27 on 64 sentences (0.2-0.9 on
    # 1000); an export bug shows up at the scale of the logits themselves (~2).
    onnx_atol: float
    uses_token_type_ids: bool = True

    def head_class(self, task: str):
        import transformers

        try:
            return getattr(transformers, self.class_prefix + HEAD_SUFFIX[task])
        except (KeyError, AttributeError):
            raise QtoolError(f"task '{task}' is not supported for {self.name}") from None


ARCHITECTURES: dict[str, ArchSpec] = {
    "bert": ArchSpec(name="bert", model_types=("bert",), class_prefix="Bert", onnx_atol=0.5),
    "squeezebert": ArchSpec(
        name="squeezebert", model_types=("squeezebert",), class_prefix="SqueezeBert", onnx_atol=0.5
    ),
}


def get_arch_spec(name: str) -> ArchSpec:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise QtoolError(
            f"unsupported architecture '{name}' (supported: {', '.join(ARCHITECTURES)})"
        ) from None


def spec_for_config(config) -> ArchSpec:
    """The spec whose `model_types` include `config.model_type`."""
    for spec in ARCHITECTURES.values():
        if config.model_type in spec.model_types:
            return spec
    raise QtoolError(
        f"unsupported architecture '{config.model_type}' (supported: {', '.join(ARCHITECTURES)})"
    )
