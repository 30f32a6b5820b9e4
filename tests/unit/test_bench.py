"""Benchmark: statistics, target parsing, the interleaved grid, and real ONNX Runtime runs on a
tiny BERT exported to ONNX (fp32) and quantized by ONNX Runtime (dynamic INT8)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from pydantic import ValidationError

from qtoolkit.bench import BACKENDS, parse_target, percentile, resolve_targets, summarize
from qtoolkit.bench.latency import chunks, time_shape
from qtoolkit.bench.report import add_speedups, family_baselines
from qtoolkit.errors import QtoolError
from qtoolkit.pipeline.benchmark import run_benchmark
from qtoolkit.recipe import Recipe

from ..conftest import SENTENCES

# --- statistics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 7, 50, 101])
def test_percentiles_match_numpy(n):
    values = list(np.random.default_rng(n).exponential(3.0, size=n))
    for q in (0, 10, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q), rel=1e-12)


def test_summary_throughput_is_sequences_per_second():
    stats = summarize([2.0, 4.0, 6.0, 8.0], batch_size=8)  # 32 sequences in 20 ms
    assert stats.p50_ms == 5.0 and stats.mean_ms == 5.0 and stats.iterations == 4
    assert stats.throughput == pytest.approx(32 / 0.020)
    assert stats.min_ms == 2.0 and stats.max_ms == 8.0
    with pytest.raises(ValueError):
        percentile([], 50)


# --- the timed loop -----------------------------------------------------------------------------


class FakeTimer:
    def __init__(self, name, log, latency=1.0, fail=None):
        self.name, self.log, self.latency, self.fail = name, log, latency, fail

    def bind(self, feeds):
        if self.fail:
            raise QtoolError(self.fail)
        self.shape = feeds["input_ids"].shape

    def warmup(self, n):
        self.log.append(("warmup", self.name, n))

    def measure(self, n):
        self.log.append(("measure", self.name, n))
        return [self.latency] * n


def test_chunks_split_iterations_evenly():
    assert chunks(50, 10) == [5] * 10
    assert chunks(7, 3) == [3, 2, 2] and sum(chunks(13, 10)) == 13


def test_backends_are_interleaved_with_rotating_order():
    log: list = []
    timers = {n: FakeTimer(n, log) for n in ("a", "b", "c")}
    timers["engine"] = FakeTimer("engine", log, fail="shape 8x512 outside the profile")
    feeds = {"input_ids": np.zeros((2, 8), np.int64)}
    result = time_shape(timers, feeds, warmup=3, iterations=6)
    assert result["engine"] == "shape 8x512 outside the profile"
    assert all(len(result[n]) == 6 for n in "abc")
    measured = [name for kind, name, _ in log if kind == "measure"]
    rounds = [measured[i : i + 3] for i in range(0, len(measured), 3)]
    assert [r[0] for r in rounds] == ["a", "b", "c", "a", "b", "c"]  # who goes first rotates
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)
    assert [e for e in log if e[0] == "warmup"] == [("warmup", n, 3) for n in "abc"]


def test_speedups_compare_with_the_family_float_baseline():
    targets = [
        {"name": "ort-fp32", "family": "onnx-cpu", "precision": "fp32"},
        {"name": "ort-int8", "family": "onnx-cpu", "precision": "int8"},
        {"name": "trt-int8", "family": "tensorrt", "precision": "int8"},
    ]
    baselines = family_baselines(targets)
    assert baselines == {"onnx-cpu": ["ort-fp32"]}
    rows = [
        {"backend": "ort-fp32", "batch": 1, "seq": 8, "p50_ms": 4.0},
        {"backend": "ort-int8", "batch": 1, "seq": 8, "p50_ms": 2.0},
        {"backend": "trt-int8", "batch": 1, "seq": 8, "p50_ms": 0.5},
    ]
    add_speedups(rows, {t["name"]: t["family"] for t in targets}, baselines)
    assert [r.get("speedup") for r in rows] == [1.0, 2.0, None]


def test_speedup_baseline_is_the_faster_float_graph_at_each_shape():
    targets = [
        {"name": "ort-fp32", "family": "ort-cpu", "precision": "fp32"},
        {"name": "ort-fp32-fused", "family": "ort-cpu", "precision": "fp32"},
        {"name": "ort-int8", "family": "ort-cpu", "precision": "int8"},
    ]
    baselines = family_baselines(targets)
    assert baselines == {"ort-cpu": ["ort-fp32", "ort-fp32-fused"]}
    rows = [
        {"backend": "ort-fp32", "batch": 1, "seq": 8, "p50_ms": 4.0},
        {"backend": "ort-fp32-fused", "batch": 1, "seq": 8, "p50_ms": 5.0},
        {"backend": "ort-int8", "batch": 1, "seq": 8, "p50_ms": 2.0},
        {"backend": "ort-fp32", "batch": 8, "seq": 8, "p50_ms": 30.0},
        {"backend": "ort-fp32-fused", "batch": 8, "seq": 8, "p50_ms": 20.0},
        {"backend": "ort-int8", "batch": 8, "seq": 8, "p50_ms": 10.0},
    ]
    add_speedups(rows, {t["name"]: t["family"] for t in targets}, baselines)
    int8 = [r for r in rows if r["backend"] == "ort-int8"]
    assert [(r["baseline"], r["speedup"]) for r in int8] == [
        ("ort-fp32", 2.0),
        ("ort-fp32-fused", 2.0),
    ]
    assert rows[1]["speedup"] == 0.8  # the slower float graph is below 1


def test_p99_only_from_enough_iterations():
    from qtoolkit.bench.stats import P99_MIN_ITERATIONS, summarize

    few = summarize([float(i) for i in range(P99_MIN_ITERATIONS - 1)], 1)
    assert few.p99_ms is None and few.p90_ms == pytest.approx(0.9 * (P99_MIN_ITERATIONS - 2))
    many = summarize([float(i) for i in range(P99_MIN_ITERATIONS)], 1)
    assert many.p99_ms == pytest.approx(0.99 * (P99_MIN_ITERATIONS - 1))
    assert many.p99_ms < many.max_ms


# --- targets ------------------------------------------------------------------------------------


def test_parse_targets(tmp_path):
    t = parse_target("ort-int8=runs/x/model.onnx")
    assert t.name == "ort-int8" and t.backend is BACKENDS["ort-int8"] and t.explicit
    t = parse_target("qat:ort-cuda-int8=q.onnx")
    assert t.name == "qat" and t.backend.provider == "CUDAExecutionProvider"
    assert parse_target("best=x.engine").backend.name == "trt-int8"
    ckpt = tmp_path / "calibrated"
    ckpt.mkdir()
    (ckpt / "qtoolkit.json").write_text(json.dumps({"format": "qtoolkit-quantized"}))
    assert parse_target(f"ptq={ckpt}").backend.name == "torch-fakequant"
    for bad in ("no-equals-sign", "x:nope=a.onnx", "label=missing.onnx", "ort-int8="):
        with pytest.raises(QtoolError):
            parse_target(bad)


def test_recipe_backends_are_checked_and_resolved(tmp_path):
    with pytest.raises(ValidationError, match="unknown backends"):
        Recipe.model_validate({"bench": {"backends": ["ort-int4"]}})
    with pytest.raises(ValidationError):
        Recipe.model_validate({"bench": {"batch_sizes": [0]}})
    r = Recipe.model_validate(
        {
            "output_dir": str(tmp_path),
            "bench": {"backends": ["ort-fp32", "ort-int8", "trt-int8", "trt-fp16"]},
        }
    )
    targets = {t.name: t for t in resolve_targets(r, ["ort-int8=elsewhere/q.onnx"])}
    assert targets["ort-fp32"].path == tmp_path / "export" / "model.fp32.onnx"
    assert str(targets["ort-int8"].path) == "elsewhere/q.onnx" and targets["ort-int8"].explicit
    assert targets["trt-int8"].path == tmp_path / "engine" / "model.engine"
    assert targets["trt-fp16"].path is None


# --- real runs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory, tiny_bert_dir):
    """export/ with model.fp32.onnx (torch.onnx.export), model.onnx (ORT dynamic INT8), and the
    config and tokenizer, as the export stage lays it out."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import BertForSequenceClassification

    out = tmp_path_factory.mktemp("run") / "export"
    shutil.copytree(tiny_bert_dir, out)
    model = BertForSequenceClassification.from_pretrained(tiny_bert_dir).eval()

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids, attention_mask, token_type_ids).logits

    names = ["input_ids", "attention_mask", "token_type_ids"]
    ids = torch.ones(2, 8, dtype=torch.long)
    torch.onnx.export(
        Logits(),
        (ids, ids, torch.zeros_like(ids)),
        str(out / "model.fp32.onnx"),
        dynamo=False,
        opset_version=17,
        input_names=names,
        output_names=["logits"],
        dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in names}, "logits": {0: "batch"}},
    )
    quantize_dynamic(
        str(out / "model.fp32.onnx"), str(out / "model.onnx"), weight_type=QuantType.QInt8
    )
    return out


@pytest.fixture(scope="module")
def test_jsonl(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "test.jsonl"
    rows = [{"text": s, "label": int("good" in s or "love" in s)} for s in SENTENCES]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _recipe(onnx_dir, tiny_bert_dir, test_file=None, **bench) -> Recipe:
    settings = {"batch_sizes": [1, 2], "seq_lengths": [8, 16], "warmup": 1, "iterations": 3}
    return Recipe.model_validate(
        {
            "name": "tiny-bench",
            "output_dir": str(onnx_dir.parent),
            "model": {"path": str(tiny_bert_dir)},
            "data": {"test_file": test_file, "max_length": 16},
            "bench": {**settings, "threads": 1, **bench},
        }
    )


def test_grid_reports_and_skipped_tensorrt(onnx_dir, tiny_bert_dir, test_jsonl, monkeypatch):
    import qtoolkit.engine

    monkeypatch.setattr(qtoolkit.engine, "installed_tensorrt_version", lambda: None)
    backends = ["torch-fp32", "ort-fp32", "ort-int8", "trt-int8"]
    recipe = _recipe(onnx_dir, tiny_bert_dir, str(test_jsonl), backends=backends, fused_fp32=False)
    outcome = run_benchmark(recipe)

    # TensorRT is skipped, visibly and with its reason; the rest ran at every shape.
    assert [s["name"] for s in outcome.skipped] == ["trt-int8"]
    assert "TensorRT" in outcome.skipped[0]["reason"]
    assert any(n.startswith("trt-int8 skipped: needs an NVIDIA GPU") for n in outcome.notices)
    shapes = [(1, 8), (2, 8), (1, 16), (2, 16)]
    got = [(r["backend"], r["batch"], r["seq"]) for r in outcome.rows]
    assert got == [(b, *s) for s in shapes for b in ("torch-fp32", "ort-fp32", "ort-int8")]
    for row in outcome.rows:
        # 3 timed iterations: p99 would be the slowest one, so it is not given.
        assert row["iterations"] == 3 and row["p50_ms"] <= row["p90_ms"] and row["p99_ms"] is None
        assert row["throughput"] == pytest.approx(row["batch"] * 1000 / row["mean_ms"], rel=1e-3)
    assert outcome.baselines == {"torch-cpu": ["torch-fp32"], "onnx-cpu": ["ort-fp32"]}
    int8 = next(r for r in outcome.rows if r["backend"] == "ort-int8")
    fp32 = next(r for r in outcome.rows if r["backend"] == "ort-fp32")
    assert fp32["speedup"] == 1.0
    assert int8["speedup"] == pytest.approx(fp32["p50_ms"] / int8["p50_ms"], rel=1e-2)

    # Accuracy through evaluate_runner: the fp32 ONNX decides exactly like PyTorch fp32.
    acc = outcome.accuracy
    assert set(acc) == {"torch-fp32", "ort-fp32", "ort-int8"}
    assert acc["ort-fp32"]["metrics"] == pytest.approx(acc["torch-fp32"]["metrics"])
    assert acc["ort-fp32"]["agreement"] == 1.0 and acc["ort-int8"]["agreement_with"] == "torch-fp32"
    # Δ and agreement against the float reference carry paired bootstrap intervals.
    a8 = acc["ort-int8"]
    lo, hi = a8["agreement_interval"]["low"], a8["agreement_interval"]["high"]
    assert lo <= a8["agreement"] <= hi
    assert a8["delta_points"] == pytest.approx(
        100 * (a8["metrics"]["accuracy"] - acc["torch-fp32"]["metrics"]["accuracy"])
    )
    assert a8["delta"]["low"] <= a8["delta"]["value"] <= a8["delta"]["high"]
    assert acc["ort-fp32"]["tie"] is True  # identical predictions: a difference of exactly 0
    assert acc["torch-fp32"]["delta"] is None  # the reference itself
    for entry in acc.values():  # every backend's own accuracy carries its interval
        iv = entry["metric_interval"]
        assert iv["value"] == pytest.approx(entry["metrics"]["accuracy"])
        assert iv["low"] <= iv["value"] <= iv["high"]

    # Files, written together.
    out = outcome.output_dir
    assert out == onnx_dir.parent / "bench"
    results = json.loads((out / "results.json").read_text())
    assert results["inputs"].startswith("sentences from") and len(results["rows"]) == 12
    assert results["accuracy_examples"] == len(SENTENCES)
    md = (out / "results.md").read_text()
    # one row per shape, then one in the accuracy table
    assert md.count("| ort-int8 |") == len(shapes) + 1
    assert "- trt-int8: needs an NVIDIA GPU" in md
    assert "![accuracy against p50 latency](accuracy_latency.png)" in md
    assert "p99 not shown: 3 timed iterations (< 100)" in md
    assert "| ort-int8 | " in md and "agreement with torch-fp32 (95% CI)" in md
    assert outcome.plot == out / "accuracy_latency.png"
    assert outcome.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fused_fp32_graph_is_a_second_baseline(onnx_dir, tiny_bert_dir, test_jsonl, tmp_path):
    recipe = _recipe(
        onnx_dir,
        tiny_bert_dir,
        str(test_jsonl),
        backends=["ort-fp32", "ort-int8"],
        batch_sizes=[1],
        seq_lengths=[8],
        output_dir=str(tmp_path / "b"),
    )
    outcome = run_benchmark(recipe)
    assert outcome.baselines == {"onnx-cpu": ["ort-fp32", "ort-fp32-fused"]}
    assert [r["backend"] for r in outcome.rows] == ["ort-fp32", "ort-int8", "ort-fp32-fused"]
    timed = {r["backend"]: r for r in outcome.rows}
    faster = min(("ort-fp32", "ort-fp32-fused"), key=lambda n: timed[n]["p50_ms"])
    assert timed["ort-int8"]["baseline"] == faster
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    fused = next(t for t in results["targets"] if t["name"] == "ort-fp32-fused")
    assert fused["fused"] and fused["path"].endswith("fused at run time")
    # The fused graph computes the same function: same decisions as the raw one.
    assert outcome.accuracy["ort-fp32-fused"]["agreement"] == 1.0
    assert "cpu" in results["machine"] and "cores" in results["machine"]


def test_labelled_target_and_synthetic_inputs_without_data(onnx_dir, tiny_bert_dir, tmp_path):
    recipe = _recipe(onnx_dir, tiny_bert_dir, backends=[], output_dir=str(tmp_path / "b"))
    outcome = run_benchmark(recipe, [f"mine={onnx_dir / 'model.onnx'}"])
    assert {r["backend"] for r in outcome.rows} == {"mine"} and len(outcome.rows) == 4
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    assert results["targets"][0]["backend"] == "ort-int8"  # read from the graph
    assert results["inputs"].startswith("synthetic")
    assert outcome.accuracy == {} and outcome.plot is None
    assert "accuracy not measured: no data.test_file" in outcome.notices


def test_user_errors_are_one_line(onnx_dir, tiny_bert_dir, tmp_path):
    recipe = _recipe(onnx_dir, tiny_bert_dir, backends=["ort-fp32"], seq_lengths=[512])
    with pytest.raises(QtoolError, match="at most 128 tokens"):
        run_benchmark(recipe)
    with pytest.raises(QtoolError, match="not found"):
        run_benchmark(recipe, [f"ort-int8={tmp_path / 'nope.onnx'}"])
    with pytest.raises(QtoolError, match="nothing to benchmark"):
        run_benchmark(recipe, [])
    # Only stage outputs that are not there yet: each is skipped, and then nothing is left.
    empty = recipe.model_copy(update={"output_dir": tmp_path})
    with pytest.raises(QtoolError, match="nothing could be benchmarked: ort-fp32 skipped"):
        run_benchmark(empty)
