"""Careless and hostile input, through the CLI: each case must refuse with exit code 2 (130 for
Ctrl-C), print exactly one `error:` line naming the path or key, and leave every input file
byte-for-byte as it was (all inputs live under one folder whose hashes are compared).

Tiny random-init BERT checkpoints from conftest; nothing trains beyond a couple of steps.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qtoolkit.cli import app

from ..conftest import SENTENCES

runner = CliRunner()


def _run(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _refused(result, *fragments, code: int = 2) -> str:
    """The single error line, after checking the exit code and that it names `fragments`."""
    out = result.output
    assert result.exit_code == code, out
    assert "Traceback" not in out and "internal error" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    for fragment in fragments:
        assert str(fragment) in errors[0], errors[0]
    return errors[0]


def _edit_weights(folder: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    edit(weights)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


def _float_onnx(path: Path) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "float",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_bert_dir) -> Path:
    """Every input the cases use, under one folder (hashed around each case)."""
    from qtoolkit.artifacts import Kind, record_files, write_manifest

    root = tmp_path_factory.mktemp("inputs")
    bert = shutil.copytree(tiny_bert_dir, root / "bert")
    lines = [json.dumps({"text": s, "label": i % 2}) for i, s in enumerate(SENTENCES * 4)]
    (root / "calib.jsonl").write_text("\n".join(lines) + "\n")
    result = _run(
        "calibrate", "--model", bert, "--calib-file", root / "calib.jsonl",
        "--num-samples", 8, "-o", root / "calibrated",
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    finetuned = shutil.copytree(bert, root / "finetuned")  # as `qtool finetune` writes it
    write_manifest(finetuned, Kind.FLOAT, stage="finetuned")
    record_files(finetuned)
    mine = shutil.copytree(root / "calibrated", root / "calibrated-with-notes")
    (mine / "notes.txt").write_text("my own notes\n")

    def nan_weight(w):
        w["bert.encoder.layer.0.output.dense.weight"][0, 0] = float("nan")

    def huge_weight(w):  # finite, but activations overflow to inf
        w["bert.embeddings.LayerNorm.weight"][:] = 3e38

    def nan_amax(w):
        key = next(k for k in sorted(w) if k.endswith("_input_quantizer._amax"))
        w[key].fill_(float("nan"))

    _edit_weights(shutil.copytree(bert, root / "nan"), nan_weight)
    _edit_weights(shutil.copytree(bert, root / "huge"), huge_weight)
    _edit_weights(shutil.copytree(root / "calibrated", root / "nan-amax"), nan_amax)
    notok = shutil.copytree(bert, root / "no-tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        (notok / name).unlink(missing_ok=True)
    for src, name in ((bert, "truncated"), (root / "calibrated", "truncated-q")):
        weights = shutil.copytree(src, root / name) / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    bad_amax = shutil.copytree(root / "calibrated", root / "bad-amax")
    (bad_amax / "amax.json").write_text('[{"name": ')

    (root / "utf16.yaml").write_text("calib:\n  num_samples: 8\n", encoding="utf-16")
    (root / "dup.yaml").write_text("calib:\n  num_samples: 8\n  num_samples: 9\n")
    (root / "bool.yaml").write_text("calib:\n  num_samples: true\n")
    (root / "latin1.jsonl").write_bytes(
        '{"text": "a film"}\n{"text": "caf\xe9"}\n'.encode("latin-1")
    )
    (root / "labels.jsonl").write_text(
        "".join(json.dumps({"text": "the movie", "label": v}) + "\n" for v in (0, 1, 7))
    )
    (root / "empty.onnx").write_bytes(b"")
    (root / "text.onnx").write_text("not a model\n")
    _float_onnx(root / "float.onnx")
    (root / "other.json").write_text('{"mine": true}\n')
    return root


@pytest.fixture
def intact(inputs, tmp_path, monkeypatch):
    """Yields the inputs folder; afterwards every input file must be byte-for-byte unchanged.
    Runs in a fresh folder, so the default runs/default outputs of the recipe are not shared."""
    monkeypatch.chdir(tmp_path)
    before = _hashes(inputs)
    yield inputs
    assert _hashes(inputs) == before


def _cal(i: Path, model: str = "bert", *extra) -> list:
    return ["calibrate", "--model", i / model, "--calib-file", i / "calib.jsonl", *extra]


# (case id, argv from the inputs folder and a fresh output folder, fragments of the error line).
# `{i}`-relative paths keep the table readable; the closing note's table is generated from it.
WRITE_RULES = [
    # --- write rules: refused before any work (loading a model fails these tests) ---
    (
        "calibrate -o a fine-tuned checkpoint",
        lambda i, o: _cal(i, "bert", "-o", i / "finetuned"),
        ["finetuned", "fine-tuned fp32 checkpoint, not a quantized checkpoint"],
    ),
    (
        "calibrate -o a qtool folder holding the user's files",
        lambda i, o: _cal(i, "bert", "-o", i / "calibrated-with-notes"),
        ["calibrated-with-notes", "notes.txt"],
    ),
    (
        "calibrate -o the model folder",
        lambda i, o: _cal(i, "bert", "-o", i / "bert"),
        ["would overwrite the input", "bert"],
    ),
    (
        "evaluate CKPT -o CKPT/model.safetensors",
        lambda i, o: [
            "evaluate",
            i / "calibrated",
            "--data",
            i / "calib.jsonl",
            "-o",
            i / "calibrated" / "model.safetensors",
        ],  # fmt: skip
        ["model.safetensors", "would overwrite the input"],
    ),
    (
        "evaluate -o a JSON that is not a metrics file",
        lambda i, o: [
            "evaluate",
            i / "bert",
            "--data",
            i / "calib.jsonl",
            "-o",
            i / "other.json",
        ],  # fmt: skip
        ["other.json", "not a qtoolkit metrics file"],
    ),
    (
        "evaluate -o the data file",
        lambda i, o: [
            "evaluate",
            i / "bert",
            "--data",
            i / "calib.jsonl",
            "-o",
            i / "calib.jsonl",
        ],  # fmt: skip
        ["calib.jsonl", "would overwrite the input"],
    ),
    (
        "sensitivity CKPT -o CKPT/amax.json",
        lambda i, o: [
            "sensitivity",
            i / "calibrated",
            "--data",
            i / "calib.jsonl",
            "-o",
            i / "calibrated" / "amax.json",
        ],  # fmt: skip
        ["amax.json", "would overwrite the input"],
    ),
    (
        "data prepare -o a calibrated checkpoint",
        lambda i, o: ["data", "prepare", "rt-sentiment", "-o", i / "calibrated"],
        ["calibrated", "quantized checkpoint, not a dataset"],
    ),
    (
        "export-onnx CKPT -o CKPT/model.onnx",
        lambda i, o: [
            "export-onnx",
            i / "calibrated",
            "--calib-file",
            i / "calib.jsonl",
            "-o",
            i / "calibrated" / "model.onnx",
        ],  # fmt: skip
        ["calibrated", "would overwrite the input"],
    ),
    (
        "finetune -o a quantized checkpoint",
        lambda i, o: [
            "finetune",
            "--model",
            i / "bert",
            "--train-file",
            i / "calib.jsonl",
            "--eval-file",
            i / "calib.jsonl",
            "-o",
            i / "calibrated",
        ],  # fmt: skip
        ["calibrated", "quantized checkpoint, not a fine-tuned fp32 checkpoint"],
    ),
    (
        "qat -o a fine-tuned checkpoint",
        lambda i, o: [
            "qat",
            "--set",
            f"model.path={i / 'bert'}",
            "--set",
            f"output_dir={o}",
            "--set",
            f"calib.output_dir={i / 'calibrated'}",
            "--train-file",
            i / "calib.jsonl",
            "--eval-file",
            i / "calib.jsonl",
            "-o",
            i / "finetuned",
        ],  # fmt: skip
        ["finetuned", "not a quantized checkpoint"],
    ),
    (
        "ptq-sweep whose calibrated output is the fine-tuned checkpoint",
        lambda i, o: [
            "ptq-sweep",
            "--model",
            i / "bert",
            "--methods",
            "max",
            "--set",
            f"data.calib_file={i / 'calib.jsonl'}",
            "--set",
            f"data.test_file={i / 'calib.jsonl'}",
            "--set",
            f"calib.output_dir={i / 'finetuned'}",
        ],  # fmt: skip
        ["finetuned", "not a quantized checkpoint"],
    ),
    (
        "benchmark into a checkpoint folder",
        lambda i, o: [
            "benchmark",
            "--target",
            f"torch-fp32={i / 'bert'}",
            "--no-accuracy",
            "--set",
            f"bench.output_dir={i / 'calibrated'}",
        ],  # fmt: skip
        ["calibrated", "not a benchmark report"],
    ),
    (
        "run whose calibrate stage would write into the model folder",
        lambda i, o: ["run", _recipe(o, i, f"calib:\n  output_dir: {i / 'bert'}\n")],
        ["would overwrite the input", "bert"],
    ),
]
CASES = WRITE_RULES + [
    # --- finite checks ---
    (
        "calibrate a checkpoint with NaN weights",
        lambda i, o: _cal(i, "nan", "-o", o / "c"),
        ["nan", "bert.encoder.layer.0.output.dense.weight", "holds nan"],
    ),
    (
        "evaluate a checkpoint with NaN weights",
        lambda i, o: ["evaluate", i / "nan", "--data", i / "calib.jsonl"],
        ["bert.encoder.layer.0.output.dense.weight", "holds nan"],
    ),
    (
        "ptq-sweep a checkpoint with NaN weights",
        lambda i, o: [
            "ptq-sweep",
            "--model",
            i / "nan",
            "--methods",
            "max",
            "--set",
            f"data.calib_file={i / 'calib.jsonl'}",
            "--set",
            f"data.test_file={i / 'calib.jsonl'}",
            "--set",
            f"output_dir={o}",
        ],  # fmt: skip
        ["bert.encoder.layer.0.output.dense.weight", "holds nan"],
    ),
    (
        "evaluate a quantized checkpoint with a NaN amax",
        lambda i, o: ["evaluate", i / "nan-amax", "--data", i / "calib.jsonl"],
        ["nan-amax", "_amax", "holds nan"],
    ),
    (
        "calibrate a model whose activations overflow (amax inf)",
        lambda i, o: _cal(i, "huge", "--method", "percentile", "-o", o / "c"),
        ["quantizer bert.", "amax is inf"],
    ),
    (
        "calibrate (max) a model whose activations overflow",
        lambda i, o: _cal(i, "huge", "--method", "max", "-o", o / "c"),
        ["quantizer bert.", "amax is inf"],
    ),
    (
        "evaluate a model whose logits are not finite",
        lambda i, o: ["evaluate", i / "huge", "--data", i / "calib.jsonl"],
        ["huge", "output 'logits' holds nan"],
    ),
    (
        "finetune that diverges (--lr 1e30)",
        lambda i, o: [
            "finetune",
            "--model",
            i / "bert",
            "--train-file",
            i / "calib.jsonl",
            "--eval-file",
            i / "calib.jsonl",
            "--lr",
            "1e30",
            "--batch-size",
            4,
            "--max-steps",
            3,
            "-o",
            o / "ft",
        ],  # fmt: skip
        ["training loss is", "at step 2", "no checkpoint was saved"],
    ),
    (
        "finetune --lr inf",
        lambda i, o: [
            "finetune",
            "--model",
            i / "bert",
            "--train-file",
            i / "calib.jsonl",
            "--eval-file",
            i / "calib.jsonl",
            "--lr",
            "inf",
            "-o",
            o / "ft",
        ],  # fmt: skip
        ["finetune.learning_rate", "finite number"],
    ),
    # --- inputs ---
    (
        "a checkpoint without tokenizer files",
        lambda i, o: _cal(i, "no-tokenizer", "-o", o / "c"),
        ["no-tokenizer", "has no tokenizer", "model.tokenizer"],
    ),
    (
        "integer labels outside the model's label set",
        lambda i, o: ["evaluate", i / "bert", "--data", i / "labels.jsonl"],
        ["labels.jsonl", "labels [7]", "label set 0..1"],
    ),
    (
        "eval labels the training data did not have",
        lambda i, o: [
            "finetune",
            "--model",
            i / "bert",
            "--train-file",
            i / "calib.jsonl",
            "--eval-file",
            i / "labels.jsonl",
            "-o",
            o / "ft",
        ],  # fmt: skip
        ["labels.jsonl", "labels [7]"],
    ),
    (
        "evaluate --limit 0",
        lambda i, o: ["evaluate", i / "bert", "--data", i / "calib.jsonl", "--limit", 0],
        ["--limit must be >= 1"],
    ),
    (
        "sensitivity --limit -1",
        lambda i, o: ["sensitivity", i / "calibrated", "--data", i / "calib.jsonl", "--limit", -1],
        ["--limit must be >= 1"],
    ),
    (
        "--set replacing a whole section",
        lambda i, o: [*_cal(i), "--set", "calib={method: max}", "-o", o / "c"],
        ["'calib'", "whole 'calib' section"],
    ),
    (
        "--set with no value",
        lambda i, o: [*_cal(i), "--set", "calib.num_samples=", "-o", o / "c"],
        ["calib.num_samples=", "has no value"],
    ),
    (
        "--set without section.key=",
        lambda i, o: [*_cal(i), "--set", "calib.", "-o", o / "c"],
        ["calib.", "section.key=value"],
    ),
    (
        "num_samples: true in a recipe",
        lambda i, o: [*_cal(i), "-r", i / "bool.yaml", "-o", o / "c"],
        ["bool.yaml", "calib.num_samples", "expected a number"],
    ),
    (
        "--set calib.num_samples=true",
        lambda i, o: [*_cal(i), "--set", "calib.num_samples=true", "-o", o / "c"],
        ["calib.num_samples", "expected a number"],
    ),
    (
        "duplicate keys in a recipe",
        lambda i, o: [*_cal(i), "-r", i / "dup.yaml", "-o", o / "c"],
        ["dup.yaml:3", "duplicate key 'num_samples'", "line 2"],
    ),
    (
        "a quant.skip pattern that matches nothing",
        lambda i, o: [*_cal(i), "--set", "quant.skip=[bert.encoder.layer.9*]", "-o", o / "c"],
        ["quant.skip pattern 'bert.encoder.layer.9*'"],
    ),
    (
        "check-onnx on a 0-byte file",
        lambda i, o: ["check-onnx", i / "empty.onnx"],
        ["empty.onnx", "empty (0 bytes)"],
    ),
    (
        "check-onnx on a file that is not ONNX",
        lambda i, o: ["check-onnx", i / "text.onnx"],
        ["text.onnx", "not a readable ONNX model"],
    ),
    (
        "check-onnx on an ONNX model without Q/DQ",
        lambda i, o: ["check-onnx", i / "float.onnx"],
        ["float.onnx", "not quantized", "--allow-float"],
    ),
    # --- errors that used to be `internal error: <Exception>` ---
    (
        "a UTF-16 recipe",
        lambda i, o: [*_cal(i), "-r", i / "utf16.yaml", "-o", o / "c"],
        ["utf16.yaml", "UTF-16", "UTF-8"],
    ),
    (
        "a Latin-1 calibration file",
        lambda i, o: [
            "calibrate",
            "--model",
            i / "bert",
            "--calib-file",
            i / "latin1.jsonl",
            "-o",
            o / "c",
        ],  # fmt: skip
        ["latin1.jsonl:2", "not UTF-8"],
    ),
    (
        "truncated safetensors (float checkpoint)",
        lambda i, o: _cal(i, "truncated", "-o", o / "c"),
        ["truncated", "truncated or corrupt"],
    ),
    (
        "truncated safetensors (quantized checkpoint)",
        lambda i, o: ["evaluate", i / "truncated-q", "--data", i / "calib.jsonl"],
        ["truncated-q/model.safetensors", "truncated or corrupt"],
    ),
    (
        "a corrupt amax.json",
        lambda i, o: ["inspect", i / "bad-amax"],
        ["bad-amax/amax.json:1", "corrupt amax table"],
    ),
    (
        "export-onnx --opset 99",
        lambda i, o: [
            "export-onnx",
            i / "calibrated",
            "--calib-file",
            i / "calib.jsonl",
            "--opset",
            99,
            "-o",
            o / "e" / "model.onnx",
        ],  # fmt: skip
        ["export.opset 99", "13..20"],
    ),
    (
        "evaluate --compare-to a file that is not JSON",
        lambda i, o: [
            "evaluate",
            i / "bert",
            "--data",
            i / "calib.jsonl",
            "--compare-to",
            i / "latin1.jsonl",
        ],  # fmt: skip
        ["latin1.jsonl", "not a metrics JSON"],
    ),
]


def _recipe(out: Path, i: Path, extra: str = "") -> Path:
    path = out / "recipe.yaml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"output_dir: {out / 'run'}\nstages: [calibrate]\nmodel:\n  path: {i / 'bert'}\n"
        f"data:\n  calib_file: {i / 'calib.jsonl'}\n" + extra
    )
    return path


def _no_work(monkeypatch) -> None:
    """Make every way a command starts its work (loading a model or checkpoint, opening a
    benchmark target, running a stage) fail, so a refusal is known to come first."""
    import qtoolkit.bench.backends as backends
    import qtoolkit.models as models
    import qtoolkit.pipeline.stages as stages
    import qtoolkit.quant as quant
    import qtoolkit.runtime.targets as targets

    def work_started(*args, **kwargs):
        raise AssertionError("the work started before the output was checked")

    monkeypatch.setattr(models, "load_model", work_started)
    monkeypatch.setattr(quant, "load_quantized", work_started)
    monkeypatch.setattr(targets, "open_target", work_started)
    monkeypatch.setattr(backends, "open_backend", work_started)
    for name in stages.DEFAULT_STAGES:
        monkeypatch.setitem(stages.DEFAULT_STAGES, name, work_started)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_refuses_clearly_with_inputs_intact(case, intact, tmp_path, monkeypatch):
    import qtoolkit.data.prepare as prepare

    def no_download(*args, **kwargs):  # data prepare must refuse before fetching anything
        raise AssertionError("downloaded before checking the output")

    monkeypatch.setattr(prepare, "_fetch_sdist", no_download)
    if case in WRITE_RULES:
        _no_work(monkeypatch)
    _, argv, fragments = case
    _refused(_run(*argv(intact, tmp_path)), *fragments)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "recipe.yaml"]
    assert not [p for p in leftovers if "run" not in p.parts], leftovers


def test_controls_that_must_pass(intact, tmp_path):
    """The refusals are specific: the same commands with a fix given go through."""
    i = intact
    tok = _run(*_cal(i, "no-tokenizer", "--num-samples", 8, "-o", tmp_path / "c"),
               "--set", f"model.tokenizer={i / 'bert'}")  # fmt: skip
    assert tok.exit_code == 0, tok.output
    checked = _run("check-onnx", i / "float.onnx", "--allow-float")
    assert "error:" not in checked.output, checked.output
    metrics = tmp_path / "m.json"
    for _ in range(2):  # a new metrics file, then a metrics file of its own kind, may be written
        ev = _run("evaluate", i / "bert", "--data", i / "calib.jsonl", "--limit", 4, "-o", metrics)
        assert ev.exit_code == 0, ev.output
    assert json.loads(metrics.read_text())["num_examples"] == 4


def test_read_only_output_is_refused_before_the_work(intact, tmp_path, monkeypatch):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access

    # Root ignores permission bits here, so the read-only folder is simulated at os.access.
    def access(path, mode, *args, **kwargs):
        return Path(path) != locked and real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    result = _run(*_cal(intact, "bert", "-o", locked / "c"))
    _refused(result, str(locked), "not writable")
    ev = _run(
        "evaluate", intact / "bert", "--data", intact / "calib.jsonl", "-o", locked / "m.json"
    )
    line = _refused(ev, "not writable")
    assert "accuracy" not in ev.output, line  # refused before evaluating


def test_full_disk_names_the_file(intact, tmp_path, monkeypatch):
    import shutil as sh
    from collections import namedtuple

    import safetensors.torch
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: No space left on device (os error 28)")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(safetensors.torch, "save_model", full)
    monkeypatch.setattr(sh, "disk_usage", lambda p: usage(10**9, 10**9, 0))
    out = tmp_path / "c"
    _refused(_run(*_cal(intact, "bert", "--num-samples", 8, "-o", out)), out, "disk is full")
    assert not out.exists() and not list(tmp_path.glob(".c.*"))  # no half-written folder


def test_ctrl_c_says_interrupted(intact, tmp_path, monkeypatch):
    import qtoolkit.quant as quant

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(quant, "calibrate", interrupted)
    out = tmp_path / "c"
    result = _run(*_cal(intact, "bert", "-o", out))
    assert result.exit_code == 130, result.output
    assert result.output.strip().splitlines()[-1] == "interrupted"
    assert not out.exists()


def test_ctrl_c_in_qat_says_how_to_resume_and_resume_works(intact, tmp_path, monkeypatch):
    import qtoolkit.train.loop as loop

    real_save = loop.save_train_state

    def save_then_interrupt(*args, **kwargs):  # Ctrl-C right after the first saved state
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    i = intact
    argv = ["qat", "--set", f"model.path={i / 'bert'}", "--set",
            f"calib.output_dir={i / 'calibrated'}", "--train-file", i / "calib.jsonl",
            "--eval-file", i / "calib.jsonl", "--batch-size", 8, "--max-steps", 3,
            "--save-every", 1, "--device", "cpu", "-o", tmp_path / "qat"]  # fmt: skip
    monkeypatch.setattr(loop, "save_train_state", save_then_interrupt)
    stopped = _run(*argv)
    assert stopped.exit_code == 130, stopped.output
    last = stopped.output.strip().splitlines()[-1]
    assert last.startswith("interrupted:") and "again to resume" in last, last
    assert str(tmp_path / "qat.state") in last
    monkeypatch.setattr(loop, "save_train_state", real_save)
    resumed = _run(*argv)
    assert resumed.exit_code == 0, resumed.output
    assert "resumed at step 1" in resumed.output


def test_run_force_replaces_its_own_outputs(intact, tmp_path):
    """`qtool run` stamps a stage folder after it is written; the stamp is qtool's own file, so
    a forced re-run may replace the folder (it used to count as a user's file)."""
    recipe = _recipe(tmp_path, intact, "calib:\n  num_samples: 8\n")
    for _ in range(2):
        result = _run("run", recipe, "--force")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "calibrated" / "model.safetensors").is_file()


def test_outputs_get_the_usual_permissions(intact, tmp_path):
    """Outputs are staged in mkdtemp/mkstemp (0700/0600) and moved into place; the final files
    and folders must carry the umask's permissions instead."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        out = tmp_path / "c"
        assert _run(*_cal(intact, "bert", "--num-samples", 8, "-o", out)).exit_code == 0
        onnx_out = tmp_path / "e" / "model.onnx"
        exported = _run("export-onnx", out, "--calib-file", intact / "calib.jsonl", "-o", onnx_out)
        assert exported.exit_code == 0, exported.output
    finally:
        os.umask(old)
    written = [out, *out.rglob("*"), onnx_out.parent, *onnx_out.parent.rglob("*")]
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in written}
    wrong = {str(p): oct(m) for p, m in modes.items() if m != (0o755 if p.is_dir() else 0o644)}
    assert not wrong, wrong
