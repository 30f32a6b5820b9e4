"""Every head of both architectures: calibrate -> export (validated in ONNX Runtime) ->
evaluate the ONNX file on ORT and the calibrated checkpoint in PyTorch, on tiny random models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qtoolkit.errors import QtoolError
from qtoolkit.pipeline.calibrate import run_calibrate
from qtoolkit.pipeline.evaluate import agreement, run_evaluate
from qtoolkit.pipeline.export import export_checkpoint
from qtoolkit.recipe import Recipe

from ..conftest import SENTENCES

DATA = Path(__file__).resolve().parents[1] / "data"

CHOICES = [
    {"question": "which one is good", "choices": [SENTENCES[0], SENTENCES[1]], "label": 0},
    {
        "context": "the actor was terrible",
        "question": "the film was",
        "choices": ["great", "bad"],
        "label": "bad",
    },
    {"question": "i love it", "choices": [SENTENCES[2], SENTENCES[3]], "label": 1},
]

# task -> (data file for calibration/validation, data file for evaluation, metric)
HEADS = {
    "sequence-classification": ("sentences", "labelled", "accuracy"),
    "token-classification": ("sentences", "conll", "f1"),
    "question-answering": ("sentences", "squad", "f1"),
    "multiple-choice": ("choices", "choices", "accuracy"),
    "masked-lm": ("sentences", "sentences", "masked_accuracy"),
    "next-sentence-prediction": ("pairs", "pairs", "accuracy"),
}
TAGS = ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-PER"]  # tiny_conll.txt, in label order


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("heads-data")
    sentences = folder / "sentences.jsonl"
    sentences.write_text("".join(json.dumps({"text": s}) + "\n" for s in SENTENCES * 2))
    labelled = folder / "labelled.jsonl"
    labelled.write_text(
        "".join(json.dumps({"text": s, "label": i % 2}) + "\n" for i, s in enumerate(SENTENCES))
    )
    pairs = folder / "pairs.jsonl"
    rows = [
        {"text": a, "text_b": b, "label": int(i % 2 == 1)}
        for i, (a, b) in enumerate(zip(SENTENCES, SENTENCES[1:] + SENTENCES[:1], strict=True))
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    choices = folder / "choices.jsonl"
    choices.write_text("".join(json.dumps(r) + "\n" for r in CHOICES * 3))
    return {
        "sentences": sentences,
        "labelled": labelled,
        "choices": choices,
        "pairs": pairs,
        "conll": DATA / "tiny_conll.txt",
        "squad": DATA / "tiny_squad.json",
    }


@pytest.mark.parametrize("task", list(HEADS))
def test_head_calibrate_export_evaluate(task, tiny_dir, files, tmp_path):
    calib, test, metric = HEADS[task]
    # Wider weights than 0.02, so logits differ and the ORT comparison means something.
    overrides = {"initializer_range": 0.2}
    if task == "token-classification":  # the fresh head must know the data's tags
        overrides["label2id"] = {t: i for i, t in enumerate(TAGS)}
        overrides["id2label"] = dict(enumerate(TAGS))
    recipe = Recipe.model_validate(
        {
            "output_dir": str(tmp_path / "run"),
            "model": {
                "path": str(tiny_dir),
                "task": task,
                "num_labels": len(TAGS) if task == "token-classification" else 2,
                "random_init": True,
                "config_overrides": overrides,
            },
            "data": {"calib_file": str(files[calib]), "max_length": 48},
            "calib": {"method": "max", "num_samples": 8, "batch_size": 4},
            "export": {"num_samples": 8},
        }
    )
    if task == "next-sentence-prediction" and "squeezebert" in str(tiny_dir):
        with pytest.raises(QtoolError, match="not supported for squeezebert"):
            run_calibrate(recipe)  # transformers has no SqueezeBERT NSP head
        return
    outcome = run_calibrate(recipe)
    assert outcome.num_samples == 8 and not outcome.unused
    onnx_path = tmp_path / "export" / "model.onnx"
    result = export_checkpoint(outcome.output_dir, onnx_path, recipe)
    assert result.task == task and result.validation.passed and result.violations == []
    assert result.op_counts["QuantizeLinear"] > 0
    ort = run_evaluate(onnx_path, recipe, files[test], limit=6)
    fake = run_evaluate(outcome.output_dir, recipe, files[test], limit=6)
    assert ort.backend == "onnxruntime" and fake.backend == "torch-fakequant"
    assert ort.task == fake.task == task
    assert 0.0 <= ort.metrics[metric] <= 100.0 and ort.num_examples == fake.num_examples > 0
    # The validated export predicts what the fake-quant model predicts.
    assert agreement(ort.predictions, fake.predictions) >= 0.8


def test_token_classification_finetune_and_qat(tiny_bert_dir, files, tmp_path):
    from qtoolkit.pipeline.finetune import run_finetune
    from qtoolkit.pipeline.qat import run_qat

    conll = str(files["conll"])
    recipe = Recipe.model_validate(
        {
            "output_dir": str(tmp_path / "run"),
            "model": {"path": str(tiny_bert_dir), "task": "token-classification"},
            "data": {
                "train_file": conll,
                "eval_file": conll,
                "calib_file": str(files["sentences"]),
                "max_length": 32,
            },
            "finetune": {"max_steps": 2, "batch_size": 4},
            "calib": {"method": "max", "num_samples": 8, "batch_size": 4},
            "qat": {"max_steps": 2, "batch_size": 4, "save_every_steps": None},
        }
    )
    ft = run_finetune(recipe)
    assert ft.primary_metric == "f1" and ft.steps == 2
    qat = run_qat(recipe)
    assert qat.calibrated_now and qat.primary_metric == "f1"
    onnx_path = tmp_path / "export" / "model.onnx"
    result = export_checkpoint(qat.output_dir, onnx_path, recipe)
    assert result.validation.passed and result.violations == []
    ort = run_evaluate(onnx_path, recipe, files["conll"])
    assert ort.task == "token-classification" and 0.0 <= ort.metrics["f1"] <= 1.0
