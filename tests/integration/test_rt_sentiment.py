"""Reduced real run of recipes/minilm-rt-sentiment.yaml: fine-tune MiniLM on real sentences,
PTQ with two calibrators, and compare INT8 with fp32 on held-out sentences."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from qtoolkit.cli import app

from .conftest import ROOT

pytestmark = pytest.mark.integration
runner = CliRunner()


def test_finetune_then_ptq_stays_close_to_fp32(rt_data, tmp_path):
    manifest = json.loads((rt_data / "qtoolkit.json").read_text())
    assert manifest["counts"] == {"train": 6000, "dev": 1000, "calib": 512, "test": 2000}
    # Smaller splits so this fits CI: 2,000 training sentences, 400 test sentences.
    (tmp_path / "test.jsonl").write_text(
        "".join((rt_data / "test.jsonl").read_text().splitlines(keepends=True)[:400])
    )
    (tmp_path / "dev.jsonl").write_text(
        "".join((rt_data / "dev.jsonl").read_text().splitlines(keepends=True)[:200])
    )
    sets = [
        f"output_dir={tmp_path / 'run'}",
        f"data.train_file={rt_data / 'train.jsonl'}",
        f"data.calib_file={rt_data / 'calib.jsonl'}",
        f"data.eval_file={tmp_path / 'dev.jsonl'}",
        f"data.test_file={tmp_path / 'test.jsonl'}",
        "finetune.train_limit=2000",
        "finetune.epochs=1",
        "finetune.batch_size=16",
        "finetune.learning_rate=1.0e-4",
        "calib.num_samples=128",
    ]
    args = ["-r", str(ROOT / "recipes/minilm-rt-sentiment.yaml")]
    for s in sets:
        args += ["--set", s]
    ft = runner.invoke(app, ["finetune", *args])
    assert ft.exit_code == 0, ft.output
    sweep = runner.invoke(app, ["ptq-sweep", *args, "--methods", "percentile,mse"])
    assert sweep.exit_code == 0, sweep.output
    rows = json.loads((tmp_path / "run/ptq_sweep/results.json").read_text())["rows"]
    # The calibrator the sweep chose on the 200 dev sentences, reported on the 400 test ones.
    fp32, int8 = rows[0], next(r for r in rows[1:] if r["selected"])
    assert fp32["accuracy"] > 0.75  # it learned the task (the classes are balanced)
    # Full TensorRT placement (Linear, attention matmuls, residual skip inputs), the dev choice
    # of two calibrators, on 400 test sentences: within 2 points of fp32, mostly the same
    # predictions.
    assert int8["accuracy"] >= fp32["accuracy"] - 0.02, rows
    assert int8["agreement"] >= 0.90, rows
