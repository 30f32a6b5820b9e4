"""Multiple choice: reading, [batch, choices, seq] batches, fine-tuning, QAT, engine shapes."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from qtoolkit.engine.plan import plan_build
from qtoolkit.engine.profiles import OnnxInput, make_profiles
from qtoolkit.errors import QtoolError
from qtoolkit.recipe import EngineConfig, Recipe
from qtoolkit.tasks import get_task
from qtoolkit.tasks.multiple_choice import read_choices

from .test_heads import CHOICES


@pytest.fixture
def choices_file(tmp_path):
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in CHOICES * 2))
    return path


def test_read_and_encode(choices_file, tiny_bert_dir):
    examples = read_choices(choices_file)
    assert [e.label for e in examples[:3]] == [0, 1, 1]  # "bad" is choice 1
    assert examples[1].pairs() == [
        ("the actor was terrible", "the film was great"),
        ("the actor was terrible", "the film was bad"),
    ]
    task = get_task("multiple-choice")
    data = task.encode(AutoTokenizer.from_pretrained(tiny_bert_dir), examples, 32)
    batch = next(data.batches(4, with_labels=True))
    assert batch["input_ids"].shape[:2] == (4, 2) and batch["input_ids"].shape == (
        batch["attention_mask"].shape
    )
    assert batch["labels"].tolist() == [0, 1, 1, 0]
    metrics, preds = task.evaluate(data, {"logits": [[0.0, 1.0]] * len(examples)})
    assert preds == [1] * 6 and metrics["accuracy"] == pytest.approx(4 / 6)


@pytest.mark.parametrize(
    "row, message",
    [
        ({"question": "q", "choices": ["a"], "label": 0}, "at least two"),
        ({"choices": ["a", "b"], "label": 0}, "'question' or a 'context'"),
        ({"question": "q", "choices": ["a", "b"], "label": 2}, "out of range"),
        ({"question": "q", "choices": ["a", "b"], "label": "c"}, "neither an index"),
    ],
)
def test_bad_rows_are_one_line(tmp_path, row, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(QtoolError, match=message):
        read_choices(path)


def test_choice_counts_must_agree(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [{"question": "q", "choices": ["a", "b"]}, {"question": "q", "choices": ["a", "b", "c"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(QtoolError, match="same number of choices"):
        read_choices(path)


def test_engine_profiles_and_trtexec_shapes_have_the_choices_axis(tmp_path):
    shapes = {"min_shape": (1, 16), "opt_shape": (8, 64), "max_shape": (16, 128)}
    cfg = EngineConfig(**shapes, num_choices=(2, 4, 5))
    inputs = [OnnxInput("input_ids", ("batch", "choices", "sequence"))]
    (profile,) = make_profiles(inputs, cfg)
    assert (profile.min, profile.opt, profile.max) == ((1, 2, 16), (8, 4, 64), (16, 5, 128))
    with pytest.raises(QtoolError, match="fixed choices of 4"):
        make_profiles([OnnxInput("input_ids", ("batch", 4, "sequence"))], cfg)


def test_finetune_qat_export_and_trtexec_line(tmp_path, tiny_bert_dir, choices_file):
    from qtoolkit.pipeline.export import export_checkpoint
    from qtoolkit.pipeline.finetune import run_finetune
    from qtoolkit.pipeline.qat import run_qat

    files = {k: str(choices_file) for k in ("calib_file", "train_file", "eval_file", "test_file")}
    recipe = Recipe.model_validate(
        {
            "output_dir": str(tmp_path / "run"),
            "model": {"path": str(tiny_bert_dir), "task": "multiple-choice"},
            "data": {**files, "max_length": 32},
            "finetune": {"max_steps": 2, "batch_size": 4},
            "calib": {"method": "max", "num_samples": 6, "batch_size": 3},
            "qat": {"max_steps": 2, "batch_size": 4, "save_every_steps": None},
            "export": {"num_samples": 6},
        }
    )
    ft = run_finetune(recipe)
    assert ft.primary_metric == "accuracy" and ft.steps == 2
    qat = run_qat(recipe)  # calibrates the fine-tuned model first
    assert qat.calibrated_now
    result = export_checkpoint(qat.output_dir, tmp_path / "export" / "model.onnx", recipe)
    assert result.validation.passed and result.violations == []
    plan = plan_build(result.path, tmp_path / "model.engine", EngineConfig(), trt_version="10")
    assert "--optShapes=input_ids:8x4x128,attention_mask:8x4x128" in plan.trtexec_command
