"""Reduced real QAT run: the session's fine-tuned MiniLM (`sentiment_minilm`), deliberately weak
PTQ (max calibration, both inputs of every residual add quantized), then a few QAT steps
distilled from the fp32 model. Uses the rt-sentiment splits (prepared if absent)."""

from __future__ import annotations

import pytest

from .conftest import head_lines

pytestmark = pytest.mark.integration


def test_qat_beats_weak_ptq_on_minilm(tmp_path, rt_data, sentiment_minilm):
    from qtoolkit.pipeline.evaluate import agreement, run_evaluate
    from qtoolkit.pipeline.qat import run_qat
    from qtoolkit.recipe import Recipe

    rt = rt_data
    fine_tuned = sentiment_minilm.run / "finetuned"
    recipe = Recipe.model_validate(
        {
            "output_dir": str(tmp_path / "run"),
            "model": {"path": str(fine_tuned), "task": "sequence-classification"},
            "data": {
                "train_file": str(rt / "train.jsonl"),
                "eval_file": str(head_lines(rt / "dev.jsonl", tmp_path / "dev.jsonl", 128)),
                "calib_file": str(rt / "calib.jsonl"),
                "test_file": str(sentiment_minilm.test),  # the first 400 test sentences
                "max_length": 64,
            },
            "quant": {"residual_inputs": "both"},
            "calib": {"method": "max", "num_samples": 128, "batch_size": 32},
            # Pure distillation (no labels): QAT can only win back what quantization lost, not
            # learn the task further than the fp32 model did.
            "qat": {
                "max_steps": 30,
                "batch_size": 16,
                "train_limit": 1280,
                "learning_rate": 5e-5,
                "distill": True,
                "distill_weight": 1.0,
            },
        }
    )
    outcome = run_qat(recipe)
    assert outcome.calibrated_now and outcome.distilled and outcome.steps == 30

    fp32 = run_evaluate(fine_tuned, recipe)
    ptq = run_evaluate(outcome.calibrated_dir, recipe)
    qat = run_evaluate(outcome.output_dir, recipe)
    acc = {name: r.metrics["accuracy"] for name, r in (("fp32", fp32), ("ptq", ptq), ("qat", qat))}
    # On 400 test sentences: max calibration with both residual inputs loses accuracy, 30
    # distillation steps win some of it back and move the predictions towards fp32's.
    assert acc["fp32"] > 0.7, acc
    assert acc["ptq"] < acc["fp32"] - 0.01, acc  # the PTQ baseline really is weak
    assert acc["qat"] > acc["ptq"], acc
    assert agreement(qat.predictions, fp32.predictions) > agreement(
        ptq.predictions, fp32.predictions
    )
