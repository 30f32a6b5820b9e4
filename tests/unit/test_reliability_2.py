"""Careless and hostile input, second sweep (issue 28): the commands added since the first sweep
(autoquant, ptq-sweep reports, benchmark targets, inspect, QDQBERT import, OpenVINO, torchrun)
hold the same line. Each case refuses with exit code 2, exactly one `error:` line naming the
path, key or option, and every input byte-for-byte as it was (see test_reliability.py, whose
helpers these tests share); write-rule cases also prove the refusal comes before any work.

Tiny random-init BERT checkpoints from conftest; one calibration and one export per module.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ..conftest import SENTENCES
from .test_reliability import _edit_weights, _float_onnx, _hashes, _no_work, _refused, _run

DEAD_PID = 2**22 + 12345  # above Linux's pid_max: no process has it


def _amax_key(weights: dict, suffix: str, nth: int = 0) -> str:
    return [k for k in sorted(weights) if k.endswith(suffix)][nth]


def _set_amax(folder: Path, suffix: str, value: float, channel: int | None = None) -> None:
    def edit(w):
        key = _amax_key(w, suffix)
        if channel is None:
            w[key].fill_(value)
        else:
            w[key].view(-1)[channel] = value

    _edit_weights(folder, edit)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_bert_dir) -> Path:
    """Every input the cases use, under one folder (hashed around each case)."""
    from qtoolkit.artifacts import INCOMPLETE, MARKER, Kind, record_files, write_manifest
    from qtoolkit.pipeline.qat import _unfinished

    from .test_qdqbert import write_qdqbert_checkpoint

    root = tmp_path_factory.mktemp("inputs2")
    bert = shutil.copytree(tiny_bert_dir, root / "bert")
    lines = [json.dumps({"text": s, "label": i % 2}) for i, s in enumerate(SENTENCES * 4)]
    (root / "calib.jsonl").write_text("\n".join(lines) + "\n")
    made = _run(
        "calibrate", "--model", bert, "--calib-file", root / "calib.jsonl",
        "--num-samples", 8, "-o", root / "calibrated",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    made = _run(
        "export-onnx", root / "calibrated", "--calib-file", root / "calib.jsonl",
        "--fp32-baseline", "-o", root / "export" / "model.onnx",
    )  # fmt: skip
    assert made.exit_code == 0, made.output

    # Report folders holding the user's own files (data-loss cases of the issue).
    for run, report in (("run-aq", "autoquant_report"), ("run-sweep", "ptq_sweep")):
        (root / run / report).mkdir(parents=True)
        (root / run / report / "results.md").write_text("my own results\n")
    notes = root / "run-aq-notes" / "autoquant_report"
    notes.mkdir(parents=True)
    (notes / "results.md").write_text("| written by qtool |\n")
    write_manifest(notes, Kind.REPORT, report="autoquant")
    record_files(notes)
    (notes / "notes.txt").write_text("my notes\n")

    # Quantized checkpoints that must be refused at load.
    def variant(name: str, edit=None) -> Path:
        folder = shutil.copytree(root / "calibrated", root / name)
        if edit is not None:
            edit(folder)
        return folder

    variant("no-weights", lambda f: (f / "model.safetensors").unlink())
    variant("no-config", lambda f: (f / "config.json").unlink())
    variant("empty-config", lambda f: (f / "config.json").write_text(""))
    variant("gpt2-config", lambda f: (f / "config.json").write_text('{"model_type": "gpt2"}'))
    variant("neg-amax", lambda f: _set_amax(f, "_input_quantizer._amax", -1.0))

    def unfinished(folder: Path) -> None:  # what an interrupted `qtool qat` leaves
        manifest = json.loads((folder / MARKER).read_text())
        manifest[INCOMPLETE] = _unfinished(root / "qat.state", root / "calibrated")
        (folder / MARKER).write_text(json.dumps(manifest))

    variant("qat-unfinished", unfinished)

    # QDQBERT checkpoints (transformers' removed format) with broken amax.
    def qdqbert(name: str, **kw) -> Path:
        scratch = tmp_path_factory.mktemp(name)
        made = write_qdqbert_checkpoint(scratch, tiny_bert_dir, **kw)[0]
        return Path(shutil.move(made, root / name))

    from .test_qdqbert import LAYERS, qdqbert_amax_names

    query = "bert.encoder.layer.0.attention.self.query"
    _set_amax(qdqbert("qdq-zero-input"), f"{query}._input_quantizer._amax", 0.0)
    _set_amax(qdqbert("qdq-zero-channel"), f"{query}._weight_quantizer._amax", 0.0, channel=3)
    _set_amax(qdqbert("qdq-nan"), f"{query}._input_quantizer._amax", float("nan"))
    qdqbert("qdq-no-amax", drop=qdqbert_amax_names(LAYERS))

    # Recipes and data files.
    (root / "budget-bool.yaml").write_text("quant:\n  auto:\n    budget_points: true\n")
    (root / "alpha-bool.yaml").write_text("quant:\n  smoothquant:\n    alpha: true\n")
    (root / "no-sites.yaml").write_text("quant:\n  smoothquant:\n    sites: []\n")
    (root / "typo.yaml").write_text("model:\n  config_overrides:\n    hiden_dropout_prob: 0.2\n")
    bomb = ["model:", "  config_overrides:", "    a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (root / "bomb.yaml").write_text("\n".join(bomb) + "\n")
    (root / "empty-text.jsonl").write_text(
        json.dumps({"text": "a good film", "label": 1}) + "\n" + json.dumps({"text": ""}) + "\n"
    )
    question = {"question": "the film was", "choices": ["good", "bad"]}
    rows = [{**question, "label": 0}, {**question, "label": 1}, question]
    (root / "mc-unlabelled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, choices in (("null", ["good", None]), ("object", [{"a": 1}, "bad"])):
        row = {"question": "the film was", "choices": choices, "label": 0}
        (root / f"mc-{name}.jsonl").write_text(json.dumps(row) + "\n")
    _float_onnx(root / "float.onnx")
    (root / "text.onnx").write_text("not a model\n")
    (root / "ir").mkdir()
    (root / "ir" / "model.xml").write_text('<?xml version="1.0"?>\n<net name="m" version="11"/>\n')
    (root / "cache").mkdir()
    (root / "cache" / "vaderSentiment-3.3.2.tar.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 300)
    return root


@pytest.fixture
def intact(inputs, tmp_path, monkeypatch):
    """Yields the inputs folder; afterwards every input file must be byte-for-byte unchanged."""
    monkeypatch.chdir(tmp_path)
    before = _hashes(inputs)
    yield inputs
    assert _hashes(inputs) == before


def _aq(i: Path, run: str, *extra) -> list:
    return [
        "autoquant", "--set", f"model.path={i / 'bert'}", "--set", f"output_dir={i / run}",
        "--set", f"data.calib_file={i / 'calib.jsonl'}",
        "--set", f"data.eval_file={i / 'calib.jsonl'}",
        "--set", f"data.test_file={i / 'calib.jsonl'}", "--no-latency", *extra,
    ]  # fmt: skip


def _sweep(i: Path, out: Path, *extra) -> list:
    return [
        "ptq-sweep", "--model", i / "bert", "--set", f"output_dir={out}",
        "--set", f"data.calib_file={i / 'calib.jsonl'}",
        "--set", f"data.test_file={i / 'calib.jsonl'}", *extra,
    ]  # fmt: skip


def _bench(i: Path, o: Path, *targets: str, extra=()) -> list:
    argv = ["benchmark", "--no-accuracy", "--set", f"bench.output_dir={o / 'bench'}", *extra]
    for t in targets:
        argv += ["--target", t.format(i=i)]
    return argv


def _dry(i: Path, *extra) -> list:
    return ["build-engine", i / "export" / "model.onnx", "--dry-run", "--trt-version", "10", *extra]


def _cal(i: Path, o: Path, *extra) -> list:
    return ["calibrate", "--model", i / "bert", "--calib-file", i / "calib.jsonl", *extra]


def _mc(i: Path, o: Path, data: str) -> list:
    return [
        "calibrate", "--model", i / "bert", "--calib-file", i / data,
        "--set", "model.task=multiple-choice", "-o", o / "c",
    ]  # fmt: skip


# (case id, argv from the inputs folder and a fresh output folder, fragments of the error line).
WRITE_RULES = [
    (
        "autoquant over the user's autoquant_report/results.md",
        lambda i, o: _aq(i, "run-aq"),
        ["run-aq/autoquant_report", "not written by qtool"],
    ),
    (
        "autoquant into a report folder holding the user's notes.txt",
        lambda i, o: _aq(i, "run-aq-notes"),
        ["autoquant_report", "notes.txt"],
    ),
    (
        "ptq-sweep over the user's ptq_sweep/results.md",
        lambda i, o: _sweep(i, i / "run-sweep", "--methods", "max"),
        ["run-sweep/ptq_sweep", "not written by qtool"],
    ),
    (
        "an output path that is a symbolic link loop",
        lambda i, o: [*_cal(i, o), "-o", o / "loop-a"],
        ["loop-a", "symbolic link loop"],
    ),
    (
        "an output under /proc",
        lambda i, o: [*_cal(i, o), "-o", "/proc/qtool-out"],
        ["/proc/qtool-out", "proc file system"],
    ),
    (
        "a metrics file under /sys",
        lambda i, o: ["evaluate", i / "bert", "--data", i / "calib.jsonl", "-o", "/sys/m.json"],
        ["/sys/m.json", "sysfs file system"],
    ),
    # --- benchmark --target: refused before any target is opened ---
    (
        "benchmark --target with a misspelt backend (ov-int9)",
        lambda i, o: _bench(i, o, "ov-int9={i}/export/model.onnx"),
        ["unknown backend 'ov-int9'", "LABEL:BACKEND"],
    ),
    (
        "benchmark --target with a misspelt backend (ort-int4)",
        lambda i, o: _bench(i, o, "ort-int4={i}/export/model.onnx"),
        ["unknown backend 'ort-int4'"],
    ),
    (
        "benchmark --target with the same name twice",
        lambda i, o: _bench(i, o, "x={i}/export/model.onnx", "x={i}/export/model.fp32.onnx"),
        ["'x' is given twice", "model.fp32.onnx"],
    ),
    (
        "benchmark an fp32 ONNX as ort-int8",
        lambda i, o: _bench(i, o, "ort-int8={i}/export/model.fp32.onnx"),
        ["ort-int8", "model.fp32.onnx is not quantized"],
    ),
    (
        "benchmark a float checkpoint as torch-fakequant",
        lambda i, o: _bench(i, o, "torch-fakequant={i}/bert"),
        ["torch-fakequant", "is not quantized"],
    ),
    (
        "benchmark --batch-sizes 1,,8",
        lambda i, o: _bench(
            i, o, "ort-int8={i}/export/model.onnx", extra=["--batch-sizes", "1,,8"]
        ),
        ["--batch-sizes '1,,8'", "comma-separated integers"],
    ),
]
VALUES = [
    (
        "autoquant --budget inf",
        lambda i, o: _aq(i, "run-x", "--budget", "inf"),
        ["--budget inf", "quant.auto.budget_points", "finite number"],
    ),
    (
        "autoquant --budget nan",
        lambda i, o: _aq(i, "run-x", "--budget", "nan"),
        ["--budget nan", "finite number"],
    ),
    (
        "autoquant --budget -1",
        lambda i, o: _aq(i, "run-x", "--budget", "-1"),
        ["--budget -1", "greater than or equal to 0"],
    ),
    (
        "budget_points: true in a recipe",
        lambda i, o: [*_aq(i, "run-x"), "-r", i / "budget-bool.yaml"],
        ["budget-bool.yaml", "quant.auto.budget_points", "expected a number"],
    ),
    (
        "autoquant --methods ''",
        lambda i, o: _aq(i, "run-x", "--methods", ""),
        ["--methods ''", "empty name"],
    ),
    (
        "ptq-sweep --methods ''",
        lambda i, o: _sweep(i, o, "--methods", ""),
        ["--methods ''", "empty name"],
    ),
    (
        "smoothquant.alpha: true",
        lambda i, o: [*_cal(i, o), "-r", i / "alpha-bool.yaml", "-o", o / "c"],
        ["alpha-bool.yaml", "quant.smoothquant.alpha", "expected a number"],
    ),
    (
        "smoothquant.sites: []",
        lambda i, o: [*_cal(i, o), "-r", i / "no-sites.yaml", "-o", o / "c"],
        ["no-sites.yaml", "quant.smoothquant.sites", "at least 1 item"],
    ),
    (
        "--max-shape beyond max_position_embeddings (dry run)",
        lambda i, o: _dry(i, "--max-shape", "32x100000"),
        ["100000", "takes at most 128", "max_position_embeddings"],
    ),
    (
        "data.max_length beyond max_position_embeddings",
        lambda i, o: [*_cal(i, o), "--max-length", 256, "-o", o / "c"],
        ["data.max_length 256", "128 tokens", "--max-length"],
    ),
    (
        "--max-shape below --opt-shape names the option, not the engine section",
        lambda i, o: _dry(i, "--max-shape", "32x64"),
        ["--max-shape 32x64", "seq must satisfy"],
    ),
    (
        "--min-shape 0x16",
        lambda i, o: _dry(i, "--min-shape", "0x16"),
        ["--min-shape '0x16'", ">= 1"],
    ),
    (
        "an alias bomb in a recipe",
        lambda i, o: [*_cal(i, o), "-r", i / "bomb.yaml", "-o", o / "c"],
        ["bomb.yaml", "aliases", "100,000 values"],
    ),
    (
        "an alias bomb in --set",
        lambda i, o: [
            *_cal(i, o),
            "--set",
            "model.config_overrides.x=[&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,"
            "*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], "
            "[*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]]",
            "-o",
            o / "c",
        ],
        ["override 'model.config_overrides.x=", "aliases"],
    ),
    (
        "a misspelt config_overrides key",
        lambda i, o: [*_cal(i, o), "-r", i / "typo.yaml", "-o", o / "c"],
        ["'hiden_dropout_prob' is not a field", "did you mean 'hidden_dropout_prob'"],
    ),
]
INPUTS = [
    (
        "inspect a checkpoint whose model.safetensors is gone",
        lambda i, o: ["inspect", i / "no-weights"],
        ["no-weights/model.safetensors is missing"],
    ),
    (
        "inspect a checkpoint without config.json",
        lambda i, o: ["inspect", i / "no-config"],
        ["no-config/config.json is missing"],
    ),
    (
        "inspect a checkpoint with an empty config.json",
        lambda i, o: ["inspect", i / "empty-config"],
        ["empty-config/config.json", "cannot read"],
    ),
    (
        "inspect a checkpoint with a gpt2 config.json",
        lambda i, o: ["inspect", i / "gpt2-config"],
        ["gpt2-config/config.json", "unsupported architecture 'gpt2'"],
    ),
    (
        "a multiple-choice file where one question has no label",
        lambda i, o: _mc(i, o, "mc-unlabelled.jsonl"),
        ["mc-unlabelled.jsonl:3", "no 'label'", "1 of 3 unlabelled"],
    ),
    (
        "a multiple-choice answer that is null",
        lambda i, o: _mc(i, o, "mc-null.jsonl"),
        ["mc-null.jsonl:1", "choice 1 is null"],
    ),
    (
        "a multiple-choice answer that is an object",
        lambda i, o: _mc(i, o, "mc-object.jsonl"),
        ["mc-object.jsonl:1", 'choice 0 is {"a": 1}'],
    ),
    (
        'a row whose "text" is empty',
        lambda i, o: ["evaluate", i / "bert", "--data", i / "empty-text.jsonl"],
        ["empty-text.jsonl:2", "'text' is empty"],
    ),
    (
        "export-onnx of an interrupted QAT output",
        lambda i, o: [
            "export-onnx",
            i / "qat-unfinished",
            "--calib-file",
            i / "calib.jsonl",
            "-o",
            o / "e" / "model.onnx",
        ],  # fmt: skip
        ["qat-unfinished is an unfinished quantized checkpoint", "again to resume", "qat.state"],
    ),
    # --- QDQBERT import: the quantizer named at load ---
    (
        "QDQBERT import with an input amax of 0",
        lambda i, o: [
            "export-onnx",
            i / "qdq-zero-input",
            "--calib-file",
            i / "calib.jsonl",
            "-o",
            o / "e" / "model.onnx",
        ],  # fmt: skip
        ["quantizer bert.encoder.layer.0.attention.self.query._input_quantizer has amax 0"],
    ),
    (
        "QDQBERT import with one weight channel's amax 0",
        lambda i, o: ["evaluate", i / "qdq-zero-channel", "--data", i / "calib.jsonl"],
        ["query._weight_quantizer has amax 0 (channel 3 of 32)"],
    ),
    (
        "QDQBERT import with no amax at all",
        lambda i, o: [
            "export-onnx",
            i / "qdq-no-amax",
            "--calib-file",
            i / "calib.jsonl",
            "-o",
            o / "e" / "model.onnx",
        ],  # fmt: skip
        ["qdq-no-amax holds no amax", "qtool calibrate --model"],
    ),
    (
        "QDQBERT import with a NaN amax",
        lambda i, o: ["evaluate", i / "qdq-nan", "--data", i / "calib.jsonl"],
        ["query._input_quantizer._amax", "holds nan"],
    ),
    (
        "inspect on a QDQBERT folder with a NaN amax",
        lambda i, o: ["inspect", i / "qdq-nan"],
        ["query._input_quantizer._amax", "holds nan"],
    ),
    # --- errors that used to be `internal error: <Exception>` or a line of OpenVINO's source ---
    (
        "a negative amax",
        lambda i, o: ["evaluate", i / "neg-amax", "--data", i / "calib.jsonl"],
        ["neg-amax/model.safetensors", "_input_quantizer has amax -1"],
    ),
    (
        "OpenVINO on a file that is not ONNX",
        lambda i, o: [
            "evaluate",
            i / "text.onnx",
            "--runtime",
            "openvino",
            "--data",
            i / "calib.jsonl",
        ],
        ["text.onnx", "not a readable ONNX model"],
    ),
    (
        "OpenVINO IR without its .bin",
        lambda i, o: ["evaluate", i / "ir" / "model.xml", "--data", i / "calib.jsonl"],
        ["ir/model.xml", "model.bin is missing"],
    ),
    (
        "data prepare with a corrupt cached sdist",
        lambda i, o: ["data", "prepare", "rt-sentiment", "--cache", i / "cache", "-o", o / "d"],
        ["vaderSentiment-3.3.2.tar.gz", "not a readable", "delete it"],
    ),
]
CASES = WRITE_RULES + VALUES + INPUTS


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_refuses_clearly_with_inputs_intact(case, intact, tmp_path, monkeypatch):
    os.symlink(tmp_path / "loop-b", tmp_path / "loop-a")
    os.symlink(tmp_path / "loop-a", tmp_path / "loop-b")
    if case in WRITE_RULES:
        _no_work(monkeypatch)
    _, argv, fragments = case
    _refused(_run(*argv(intact, tmp_path)), *fragments)
    stray = [p for p in tmp_path.rglob("*") if not p.name.startswith("loop-")]
    assert not stray, stray


def test_export_on_a_full_disk_leaves_nothing_and_reruns(intact, tmp_path, monkeypatch):
    """The export folder is one unit: a full disk leaves no model.onnx without its manifest
    (which check-onnx would call TensorRT-ready), and the rerun after freeing space works."""
    import errno

    import onnx

    real_save = onnx.save_model

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "e" / "model.onnx"
    argv = ["export-onnx", intact / "calibrated", "--calib-file", intact / "calib.jsonl", "-o", out]
    monkeypatch.setattr(onnx, "save_model", full)
    _refused(_run(*argv), tmp_path / "e", "disk is full")
    assert not list(tmp_path.rglob("*")), list(tmp_path.rglob("*"))
    monkeypatch.setattr(onnx, "save_model", real_save)
    again = _run(*argv)
    assert again.exit_code == 0, again.output
    assert {"model.onnx", "config.json", "qtoolkit.json"} <= {p.name for p in out.parent.iterdir()}


def test_leftovers_of_a_killed_export_are_cleaned_not_refused(intact, tmp_path):
    """SIGKILL during an export leaves qtool's temp folders (inside the export folder and next
    to it); the same command must run again, and remove them."""
    folder = shutil.copytree(intact / "export", tmp_path / "e")
    inside = folder / f".model.onnx.{DEAD_PID}-abcd1234.tmp"
    inside.mkdir()
    (inside / "model.onnx").write_bytes(b"half")
    beside = tmp_path / f".e.{DEAD_PID}-wxyz5678.tmp"
    beside.mkdir()
    (beside / "model.onnx").write_bytes(b"half")
    fresh = tmp_path / "f"  # a first export killed before anything but its temp was written
    (fresh / f".model.onnx.{DEAD_PID}-abcd1234.tmp").mkdir(parents=True)
    for out in (folder, fresh):
        argv = ["export-onnx", intact / "calibrated", "--calib-file", intact / "calib.jsonl"]
        result = _run(*argv, "-o", out / "model.onnx")
        assert result.exit_code == 0, result.output
        assert (out / "qtoolkit.json").is_file()
    leftovers = [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers
    assert (folder / "model.fp32.onnx").is_file()  # the other export in the folder is kept


def test_interrupted_qat_is_marked_then_finished_by_resuming(intact, tmp_path, monkeypatch):
    """Ctrl-C after QAT saved its first best epoch: the output is marked unfinished, export-onnx
    refuses it with the resume hint, and resuming finishes it (mark gone, export works)."""
    import qtoolkit.train.loop as loop
    from qtoolkit.artifacts import INCOMPLETE, MARKER

    real_save = loop.save_train_state
    calls = []

    def save_then_interrupt(*args, **kwargs):  # Ctrl-C after the epoch-1 state and checkpoint
        real_save(*args, **kwargs)
        calls.append(1)
        raise KeyboardInterrupt

    i, out = intact, tmp_path / "qat"
    argv = ["qat", "--set", f"model.path={i / 'bert'}", "--set",
            f"calib.output_dir={i / 'calibrated'}", "--train-file", i / "calib.jsonl",
            "--eval-file", i / "calib.jsonl", "--batch-size", 16, "--epochs", 2,
            "--save-every", 100, "--device", "cpu", "-o", out]  # fmt: skip
    monkeypatch.setattr(loop, "save_train_state", save_then_interrupt)
    stopped = _run(*argv)
    assert stopped.exit_code == 130 and calls, stopped.output
    assert INCOMPLETE in json.loads((out / MARKER).read_text())
    export = [
        "export-onnx",
        out,
        "--calib-file",
        i / "calib.jsonl",
        "-o",
        tmp_path / "e" / "m.onnx",
    ]
    _refused(_run(*export), f"{out} is an unfinished", "again to resume")
    monkeypatch.setattr(loop, "save_train_state", real_save)
    resumed = _run(*argv)
    assert resumed.exit_code == 0, resumed.output
    assert INCOMPLETE not in json.loads((out / MARKER).read_text())
    assert _run(*export).exit_code == 0


def test_under_torchrun_only_rank_0_runs_non_parallel_commands(intact, tmp_path, monkeypatch):
    """`torchrun ... export-onnx` used to write the same file from every rank and print every
    line twice: the other ranks now return at once, rank 0 runs as one plain process."""
    out = tmp_path / "e" / "model.onnx"
    argv = ["export-onnx", intact / "calibrated", "--calib-file", intact / "calib.jsonl", "-o", out]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    other = _run(*argv)
    assert other.exit_code == 0 and other.output == "", other.output
    assert not tmp_path.joinpath("e").exists()
    monkeypatch.setenv("RANK", "0")
    main = _run("inspect", intact / "calibrated", "--pattern", "*query._input_quantizer")
    assert main.exit_code == 0, main.output
    assert main.output.count("runs on rank 0 only") == 1, main.output
    assert os.environ["WORLD_SIZE"] == "2"  # restored for whatever runs after it


def test_paths_are_printed_verbatim(intact, tmp_path):
    """Rich markup in a user's path is text, not style: `[bold]x` stays `[bold]x`."""
    out = tmp_path / "[bold]x"
    made = _run(*_cal(intact, tmp_path), "--num-samples", 8, "-o", out)
    assert made.exit_code == 0, made.output
    assert f"wrote{out}" in "".join(made.output.split()), made.output
    _refused(_run("inspect", tmp_path / "[red]missing"), "[red]missing")


def test_controls_that_must_pass(intact, tmp_path):
    """The refusals are specific: a label of one's own and a quantized file on an int8 backend
    are taken; inspect lists what the weights hold; a sequence within the positions plans."""
    from qtoolkit.bench.targets import parse_target

    assert parse_target(f"mine={intact / 'export' / 'model.onnx'}").backend.name == "ort-int8"
    assert parse_target(f"ort-int8={intact / 'export' / 'model.onnx'}").name == "ort-int8"
    listed = _run("inspect", intact / "calibrated")
    records = json.loads((intact / "calibrated" / "amax.json").read_text())
    assert listed.exit_code == 0, listed.output
    assert listed.output.count(" on ") == len(records), listed.output  # a row per quantizer
    planned = _run(*_dry(intact, "--max-shape", "32x128"))
    assert planned.exit_code == 0 and "--maxShapes=input_ids:32x128" in planned.output
