"""Masked LM as a task: probes, metrics by hand, training masks, and the stages on MLM models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from qtoolkit.data import TextExample
from qtoolkit.recipe import Recipe
from qtoolkit.tasks import get_task
from qtoolkit.tasks.evaluation import evaluate_runner

from ..conftest import SENTENCES


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_dir):
    return AutoTokenizer.from_pretrained(tiny_bert_dir)


def test_probes_and_metrics_by_hand(tokenizer):
    task = get_task("masked-lm")
    examples = [TextExample("the movie was good"), TextExample("i love it")]
    data = task.encode(tokenizer, examples, 32)
    real = [len(tokenizer(e.text)["input_ids"]) - 2 for e in examples]  # minus [CLS], [SEP]
    assert len(data.probes) == sum(real) and len(data) == 2
    vocab = len(tokenizer)

    def runner(batch):
        # Put logit 2 on the original token for even probes, on token 0 for odd ones.
        ids = batch["input_ids"].numpy()
        logits = np.zeros((*ids.shape, vocab), dtype=np.float32)
        for row in range(ids.shape[0]):
            runner.seen += 1
            _, pos, true = data.probes[runner.seen - 1]
            assert ids[row, pos] == tokenizer.mask_token_id
            logits[row, pos, true if runner.seen % 2 else 0] = 2.0
        return {"logits": logits}

    runner.seen = 0
    metrics, preds = evaluate_runner(runner, task, data, batch_size=3)
    n = len(data.probes)
    hits = (n + 1) // 2
    assert metrics["masked_accuracy"] == pytest.approx(hits / n)
    p_hit = math.e**2 / (math.e**2 + vocab - 1)
    p_miss = 1 / (math.e**2 + vocab - 1)
    expected = math.exp(-(hits * math.log(p_hit) + (n - hits) * math.log(p_miss)) / n)
    assert metrics["pseudo_perplexity"] == pytest.approx(expected, rel=1e-6)
    assert metrics["masked_tokens"] == n and len(preds) == n


def test_training_masks_are_reproducible_and_labelled(tokenizer):
    task = get_task("masked-lm")
    data = task.encode(tokenizer, [TextExample(s) for s in SENTENCES], 32)
    first = list(data.batches(4, with_labels=True, shuffle_seed=7))
    again = list(data.batches(4, with_labels=True, shuffle_seed=7))
    assert len(first) == data.num_batches(4) == 2
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
        chosen = a["labels"] != -100
        assert chosen.any(dim=1).all()  # every sentence has a masked token
        assert (a["attention_mask"][chosen] == 1).all()
        assert (a["input_ids"][chosen] == tokenizer.mask_token_id).float().mean() > 0.5


def test_stages_on_an_mlm_checkpoint(tmp_path, tiny_bert_dir):
    from qtoolkit.pipeline.benchmark import run_benchmark
    from qtoolkit.pipeline.finetune import run_finetune
    from qtoolkit.pipeline.qat import run_qat
    from qtoolkit.pipeline.sensitivity import run_sensitivity
    from qtoolkit.pipeline.sweep import run_ptq_sweep

    text = tmp_path / "sentences.jsonl"
    text.write_text("".join(json.dumps({"text": s}) + "\n" for s in SENTENCES))
    files = {k: str(text) for k in ("calib_file", "train_file", "eval_file", "test_file")}
    recipe = Recipe.model_validate(
        {
            "output_dir": str(tmp_path / "run"),
            "model": {"path": str(tiny_bert_dir), "task": "masked-lm"},
            "data": {**files, "max_length": 32},
            "finetune": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3},
            "calib": {"num_samples": 8, "batch_size": 4, "stride": 32},
            "qat": {"max_steps": 2, "batch_size": 4, "save_every_steps": None},
            "bench": {
                "backends": ["torch-fp32", "torch-fakequant"],
                "batch_sizes": [2],
                "seq_lengths": [16],
                "warmup": 0,
                "iterations": 2,
            },
        }
    )
    ft = run_finetune(recipe)
    assert ft.primary_metric == "masked_accuracy" and ft.steps == 2
    sweep = run_ptq_sweep(recipe, ["max", "percentile"])
    rows = {r["method"]: r for r in sweep.rows}
    assert {"fp32", "max"} <= set(rows) and rows["fp32"]["pseudo_perplexity"] > 1
    sens = run_sensitivity(recipe.stage_dir("calibrated"), recipe, None, None, "role")
    assert sens.rows
    qat = run_qat(recipe)
    assert qat.primary_metric == "masked_accuracy"
    bench = run_benchmark(recipe)
    assert {r["backend"] for r in bench.rows} == {"torch-fp32", "torch-fakequant"}
    assert bench.primary_metric == "masked_accuracy"
    assert all("masked_accuracy" in a["metrics"] for a in bench.accuracy.values()), bench.accuracy
