"""finetune -> evaluate -> ptq-sweep through the CLI on a tiny random BERT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qtoolkit.cli import app

from ..conftest import SENTENCES

runner = CliRunner()
DATA = Path(__file__).resolve().parents[1] / "data"


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labelled")
    rows = [
        {"text": s, "label": int("good" in s or "love" in s or "great" in s)} for s in SENTENCES
    ]
    for name, n in (("train", 4), ("dev", 1), ("test", 2)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * n))
    return folder


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, tiny_bert_dir, labelled):
    run_dir = tmp_path_factory.mktemp("run")
    path = run_dir / "r.yaml"
    path.write_text(
        f"""
name: tiny
output_dir: {run_dir / "out"}
model: {{path: {tiny_bert_dir}, task: sequence-classification}}
data:
  train_file: {labelled / "train.jsonl"}
  eval_file: {labelled / "dev.jsonl"}
  test_file: {labelled / "test.jsonl"}
  calib_file: {labelled / "train.jsonl"}
  max_length: 32
finetune: {{epochs: 2, batch_size: 8, learning_rate: 1.0e-3}}
calib: {{num_samples: 16, batch_size: 8, stride: 32}}
"""
    )
    return path


def _finetune_and_sweep(recipe):
    ft = _run("finetune", "-r", recipe)
    assert ft.exit_code == 0, ft.output
    sweep = _run("ptq-sweep", "-r", recipe, "--methods", "max,percentile")
    assert sweep.exit_code == 0, sweep.output
    return ft, sweep


@pytest.fixture(scope="module")
def calibrated(recipe):
    """The recipe's calibrated checkpoint, made here if the sweep test has not made it, so the
    tests that read it never depend on test order."""
    out = recipe.parent / "out"
    if not (out / "calibrated").is_dir():
        _finetune_and_sweep(recipe)
    return out / "calibrated"


def test_finetune_evaluate_and_sweep(recipe, labelled, tmp_path):
    ft = _run("finetune", "-r", recipe)
    assert ft.exit_code == 0, ft.output
    assert "epoch 2" in ft.output and "best accuracy" in ft.output
    out = recipe.parent / "out"
    manifest = json.loads((out / "finetuned" / "qtoolkit.json").read_text())
    assert manifest["format"] == "qtoolkit-float" and manifest["best"]["epoch"] in (1, 2)

    fp32_json = tmp_path / "fp32.json"
    ev = _run("evaluate", out / "finetuned", "-r", recipe, "-o", fp32_json)
    assert ev.exit_code == 0, ev.output
    fp32 = json.loads(fp32_json.read_text())
    assert fp32["backend"] == "torch-fp32" and fp32["num_examples"] == 2 * len(SENTENCES)
    labels = [json.loads(line)["label"] for line in (labelled / "test.jsonl").open()]
    assert len(fp32["predictions"]) == len(labels) == 16
    hits = [p == y for p, y in zip(fp32["predictions"], labels, strict=True)]
    assert fp32["metrics"]["accuracy"] == pytest.approx(sum(hits) / len(hits))

    sweep = _run("ptq-sweep", "-r", recipe, "--methods", "max,percentile")
    assert sweep.exit_code == 0, sweep.output
    results = json.loads((out / "ptq_sweep" / "results.json").read_text())
    assert [r["method"] for r in results["rows"]] == ["fp32", "max", "percentile 99.99"]
    # Chosen on dev, reported on test; the choice is the best dev accuracy.
    assert results["selected_on"].endswith("dev.jsonl")
    assert results["reported_on"].endswith("test.jsonl")
    int8_rows = results["rows"][1:]
    chosen = max(int8_rows, key=lambda r: (r["dev"]["accuracy"], r["dev_agreement"]))
    assert results["best_method"] == chosen["method"] and chosen["selected"]
    for row in int8_rows:  # paired bootstrap intervals on the test split
        d = row["delta"]
        assert d["low"] <= d["value"] <= d["high"] and row["tie"] == (d["low"] <= 0 <= d["high"])
        assert row["delta_points"] == pytest.approx(
            100 * (row["accuracy"] - results["rows"][0]["accuracy"])
        )
        a = row["agreement_interval"]
        assert a["low"] <= row["agreement"] <= a["high"]
    md = (out / "ptq_sweep" / "results.md").read_text()
    assert "Δ vs fp32 (points, 95% CI)" in md and f"**{chosen['method']}** (selected)" in md
    assert results["rows"][0]["accuracy"] == pytest.approx(fp32["metrics"]["accuracy"])
    int8_json = tmp_path / "int8.json"
    ev8 = _run(
        "evaluate", out / "calibrated", "-r", recipe, "-o", int8_json, "--compare-to", fp32_json
    )
    assert ev8.exit_code == 0, ev8.output
    int8 = json.loads(int8_json.read_text())
    assert int8["backend"] == "torch-fakequant"
    best = next(r for r in results["rows"] if r["method"] == results["best_method"])
    assert int8["metrics"]["accuracy"] == pytest.approx(best["accuracy"])
    assert int8["agreement"] == pytest.approx(best["agreement"])


def test_finetune_question_answering(tmp_path, tiny_bert_dir):
    squad = DATA / "tiny_squad.json"
    result = _run(
        "finetune",
        "--model",
        tiny_bert_dir,
        "--task",
        "question-answering",
        "--train-file",
        squad,
        "--eval-file",
        squad,
        "--max-steps",
        2,
        "--batch-size",
        4,
        "-o",
        tmp_path / "qa",
        "--set",
        "data.max_length=48",
    )
    assert result.exit_code == 0, result.output
    assert "best f1" in result.output
    ev = _run("evaluate", tmp_path / "qa", "--data", squad, "--set", "data.max_length=48")
    assert ev.exit_code == 0, ev.output
    assert "exact_match" in ev.output


def test_finetune_without_data_is_one_line(tiny_bert_dir):
    result = _run("finetune", "--model", tiny_bert_dir)
    assert result.exit_code != 0 and result.output.startswith("error:")
    assert "train_file" in result.output


def test_evaluate_untrained_head_is_refused(tmp_path, labelled, tiny_bert_dir):
    import shutil

    from transformers import AutoTokenizer, BertConfig, BertModel

    bare = tmp_path / "bare"
    BertModel(
        BertConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            vocab_size=120,
        )
    ).save_pretrained(bare)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(bare)  # a tokenizer, no head
    result = _run("evaluate", bare, "--data", labelled / "test.jsonl")
    assert result.exit_code != 0
    assert result.output.startswith("error:") and "has no trained" in result.output
    assert "qtool finetune" in result.output
    shutil.rmtree(bare)


def test_sensitivity_ranks_groups(recipe, calibrated, tmp_path):
    out = recipe.parent / "out"
    report = tmp_path / "sens.json"
    result = _run("sensitivity", out / "calibrated", "-r", recipe, "--by", "role", "-o", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    roles = [r["group"] for r in data["rows"]]
    assert "bert.encoder.layer.*.attention.self.matmul_a_input_quantizer" in roles
    assert sorted((r["metric"] for r in data["rows"]), reverse=True) == [
        r["metric"] for r in data["rows"]
    ]
    assert data["ranked_on"].endswith("dev.jsonl")  # ranked on dev, never on test
    for row in data["rows"]:
        assert row["recovered_points"] == pytest.approx(100 * (row["metric"] - data["int8"]))
        r = row["recovered"]
        assert r["low"] <= r["value"] <= r["high"]
        assert r["value"] == pytest.approx(row["recovered_points"] / 100)
    bad = _run("sensitivity", out / "calibrated", "-r", recipe, "--by", "head")
    assert bad.exit_code != 0 and "--by" in bad.output


def test_export_check_and_evaluate_onnx(recipe, calibrated, tmp_path):
    out = recipe.parent / "out"
    onnx_path = tmp_path / "export" / "model.onnx"
    ex = _run("export-onnx", out / "calibrated", "-r", recipe, "-o", onnx_path, "--fp32-baseline")
    assert ex.exit_code == 0, ex.output
    assert "TensorRT-ready: no violations" in ex.output
    assert onnx_path.is_file() and (tmp_path / "export" / "model.fp32.onnx").is_file()
    assert (tmp_path / "export" / "config.json").is_file()
    check = _run("check-onnx", onnx_path)
    assert check.exit_code == 0 and "no violations" in check.output
    torch_json = tmp_path / "torch.json"
    assert _run("evaluate", out / "calibrated", "-r", recipe, "-o", torch_json).exit_code == 0
    ev = _run("evaluate", onnx_path, "-r", recipe, "--compare-to", torch_json)
    assert ev.exit_code == 0, ev.output
    assert "onnxruntime" in ev.output and "agreement" in ev.output
    missing = _run("check-onnx", tmp_path / "nope.onnx")
    assert missing.exit_code != 0 and missing.output.startswith("error:")


def _without_dev(recipe, folder):
    """The recipe without data.eval_file (--set cannot unset a key), writing under `folder`."""
    text = recipe.read_text()
    lines = [ln for ln in text.splitlines() if "eval_file" not in ln and "output_dir" not in ln]
    path = folder / "nodev.yaml"
    path.write_text("\n".join([f"output_dir: {folder / 'out'}", *lines]) + "\n")
    return path


def test_sweep_without_dev_split_selects_nothing(recipe, calibrated, tmp_path):
    nodev = _without_dev(recipe, tmp_path)
    result = _run(
        "ptq-sweep",
        "-r",
        nodev,
        "--methods",
        "max,percentile",
        "--model",
        recipe.parent / "out" / "finetuned",
        "--set",
        "calib.method=percentile",
    )
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "out" / "ptq_sweep" / "results.json").read_text())
    assert results["selected_on"] is None and results["best_method"] is None
    assert "nothing selected" in results["selection"]
    assert results["saved_method"] == "percentile 99.99"  # the recipe's calib.method
    assert not any(r["selected"] for r in results["rows"])
    assert "nothing selected (no data.eval_file)" in " ".join(result.output.split())


def test_sensitivity_refuses_to_rank_on_test(recipe, calibrated, tmp_path):
    result = _run("sensitivity", calibrated, "-r", _without_dev(recipe, tmp_path))
    assert result.exit_code != 0 and result.output.startswith("error:")
    assert "data.eval_file" in result.output and "dev" in result.output
