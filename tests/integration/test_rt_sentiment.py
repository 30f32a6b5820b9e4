"""Reduced real run of recipes/minilm-rt-sentiment.yaml: the PTQ sweep with two calibrators on
the session's fine-tuned MiniLM (`sentiment_minilm`), INT8 against fp32 on held-out sentences."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from qtoolkit.cli import app

pytestmark = pytest.mark.integration
runner = CliRunner()


def test_finetune_then_ptq_stays_close_to_fp32(rt_data, sentiment_minilm):
    manifest = json.loads((rt_data / "qtoolkit.json").read_text())
    assert manifest["counts"] == {"train": 6000, "dev": 1000, "calib": 512, "test": 2000}
    # `sentiment_minilm` fine-tuned with `qtool finetune` on 2,000 training sentences (smaller
    # splits so this fits CI); the sweep starts from that recipe's fine-tuned checkpoint.
    sweep = runner.invoke(app, ["ptq-sweep", *sentiment_minilm.args, "--methods", "percentile,mse"])
    assert sweep.exit_code == 0, sweep.output
    rows = json.loads((sentiment_minilm.run / "ptq_sweep/results.json").read_text())["rows"]
    # The calibrator the sweep chose on the 200 dev sentences, reported on the 400 test ones.
    fp32, int8 = rows[0], next(r for r in rows[1:] if r["selected"])
    assert fp32["accuracy"] > 0.75  # it learned the task (the classes are balanced)
    # Full TensorRT placement (Linear, attention matmuls, residual skip inputs), the dev choice
    # of two calibrators, on 400 test sentences: within 2 points of fp32, mostly the same
    # predictions.
    assert int8["accuracy"] >= fp32["accuracy"] - 0.02, rows
    assert int8["agreement"] >= 0.90, rows
