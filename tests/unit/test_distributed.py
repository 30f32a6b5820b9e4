"""torchrun with 2 CPU processes (gloo) against one process on the same data.

Two launches: (1) calibration (max and percentile), QAT (distillation, hidden-state MSE,
learned amax) and fine-tuning on 2 ranks, then `qtool qat` with rank 1 failing at step 7;
(2) that run resumed by `qtool qat` on 2 ranks. Each is compared with the same stage run in
this process. Most of the time goes to starting the workers (importing torch and transformers).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ..conftest import _save_checkpoint, bert_config

HERE = Path(__file__).resolve().parent
WORKER = HERE / "dist_worker.py"
VENV_BIN = Path(sys.executable).parent
TORCHRUN = VENV_BIN / "torchrun"
WORDS = "good great love fun bad terrible hate boring the a movie film plot it was very".split()

needs_torchrun = pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun not installed")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's workers (OMP_NUM_THREADS=1): the same kernels
    yield
    torch.set_num_threads(before)


def _rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(2, 9))
        rows.append({"text": " ".join(words), "label": int(words.count("good") > 0)})
    return rows


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    from transformers import BertForSequenceClassification

    root = tmp_path_factory.mktemp("dist")
    config = bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    _save_checkpoint(root / "model", config, BertForSequenceClassification)
    # 19 training examples in global batches of 6: 6, 6, 6, 1 (rank 1 has no share of the last).
    for name, n, seed in (("train", 19, 1), ("dev", 16, 2), ("calib", 40, 3)):
        text = "".join(json.dumps(r) + "\n" for r in _rows(n, seed))
        (root / f"{name}.jsonl").write_text(text)
    return root


def _recipe(root: Path, run: str, name: str, **sections) -> Path:
    body = {
        "output_dir": str(root / run),
        "model": {"path": str(root / "model")},
        "data": {
            "train_file": str(root / "train.jsonl"),
            "eval_file": str(root / "dev.jsonl"),
            "calib_file": str(root / "calib.jsonl"),
            "max_length": 16,
        },
        "calib": {"method": "percentile", "percentile": 99.9, "num_samples": 40, "batch_size": 8},
        "qat": {"epochs": 1, "batch_size": 6, "learning_rate": 1e-3, "warmup_ratio": 0.0}
        | {"distill": True, "hidden_mse_weight": 0.1, "learn_amax": True, "device": "cpu"}
        # One evaluation per epoch, kept by the metric: a trained step is what gets compared.
        | {"evals_per_epoch": 1, "select": "metric"},
        "finetune": {"epochs": 1, "batch_size": 6, "learning_rate": 1e-3, "device": "cpu"},
    }
    for key, value in sections.items():
        body[key] = {**body.get(key, {}), **value}
    path = root / run / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body))
    return path


def _torchrun(script: list[str], env: dict[str, str] | None = None, timeout: float = 150):
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", *script]
    full_env = {
        **os.environ,
        "PYTHONPATH": str(HERE.parents[1]),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "QTOOL_DIST_TIMEOUT_S": "120",
        **(env or {}),
    }
    full_env.pop("RANK", None)
    full_env.pop("WORLD_SIZE", None)
    return subprocess.run(
        cmd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def _amax(folder: Path) -> dict[str, list]:
    return {r["name"]: r["amax"] for r in json.loads((folder / "amax.json").read_text())}


def _assert_close(got: dict, want: dict, atol: float, where: str) -> None:
    assert got.keys() == want.keys()
    worst = max(float((got[k].float() - want[k].float()).abs().max()) for k in want)
    assert worst <= atol, f"{where}: weights differ by {worst}"


def _single(stage: str, recipe: Path):
    from qtoolkit.pipeline.calibrate import run_calibrate
    from qtoolkit.pipeline.finetune import run_finetune
    from qtoolkit.pipeline.qat import run_qat
    from qtoolkit.recipe import load_recipe

    return {"calibrate": run_calibrate, "qat": run_qat, "finetune": run_finetune}[stage](
        load_recipe(recipe)
    )


@pytest.fixture(scope="module")
def two_ranks(setup) -> tuple[Path, subprocess.CompletedProcess]:
    """Launch 1, on 2 ranks: calibrate (max, then percentile), QAT, fine-tune, then `qtool qat`
    for 8 steps with rank 1 failing at step 7."""
    stages = [*_stage_recipes(setup, "two"), ("cli-qat", _qat2_recipe(setup))]
    proc = _torchrun(
        [str(WORKER), *(f"{s}={r}" for s, r in stages)],
        env={"QTOOL_TEST_RECORD": str(setup / "two" / "wrapped.json"), "QTOOL_TEST_FAIL": "1:7"},
    )
    return setup / "two", proc


def _qat2_recipe(root: Path, run: str = "two") -> Path:
    qat = {"epochs": 2, "save_every_steps": 2} | _out(root, run, "qat2")
    return _recipe(root, run, "qat2", qat=qat)


def _stage_recipes(root: Path, run: str) -> list[tuple[str, Path]]:
    # Fine-tuning writes outside <run>/finetuned, or the quantization stages would start from it.
    return [
        ("calibrate", _recipe(root, run, "max", calib={"method": "max"} | _out(root, run, "max"))),
        ("calibrate", _recipe(root, run, "pct")),
        ("qat", _recipe(root, run, "qat")),
        ("finetune", _recipe(root, run, "ft", finetune=_out(root, run, "finetuned-elsewhere"))),
    ]


def _out(root: Path, run: str, name: str) -> dict[str, str]:
    return {"output_dir": str(root / run / name)}


@needs_torchrun
def test_two_ranks_match_one_process(setup, two_ranks):
    two_ranks, proc = two_ranks
    assert (two_ranks / "qat2.state" / "state.json").is_file(), proc.stderr[-3000:]
    for stage, recipe in _stage_recipes(setup, "one"):
        _single(stage, recipe)
    one = setup / "one"
    # Calibration: the same amax as one process over the union of the batches, exactly.
    for folder in ("max", "calibrated"):
        got, want = _amax(two_ranks / folder), _amax(one / folder)
        assert any(v is not None for v in want.values())
        assert got == want, folder
    # QAT (distillation, learned amax): the same loss and weights within float noise.
    got_m = json.loads((two_ranks / "qat" / "qtoolkit.json").read_text())
    want_m = json.loads((one / "qat" / "qtoolkit.json").read_text())
    assert got_m["best"]["step"] == want_m["best"]["step"] == 4
    assert got_m["best"]["loss"] == pytest.approx(want_m["best"]["loss"], rel=1e-5)
    _assert_close(_weights(two_ranks / "qat"), _weights(one / "qat"), 1e-5, "qat")
    start = _weights(one / "calibrated")
    moved = [k for k in start if k.endswith("input_quantizer._amax")]
    assert moved and any(
        not torch.equal(_weights(one / "qat")[k], start[k]) for k in moved
    )  # the amax did learn, so comparing them means something
    # Fine-tuning: the same.
    _assert_close(
        _weights(two_ranks / "finetuned-elsewhere"),
        _weights(one / "finetuned-elsewhere"),
        1e-4,
        "ft",
    )
    # The student alone is wrapped in DDP (once for QAT, once for fine-tuning), not the teacher.
    assert (
        json.loads((two_ranks / "wrapped.json").read_text())
        == ["BertForSequenceClassification"] * 2
    )


@needs_torchrun
def test_failure_on_one_rank_then_resume(setup, two_ranks):
    """Rank 1 failed at step 7 of 8: one error line, a state at step 6; resumed on 2 ranks
    (launch 2, the qtool command) and on 1, both end with the uninterrupted weights."""
    run, failed = two_ranks
    assert failed.returncode != 0
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: rank 1 of 2: injected failure at step 7"], failed.stderr[-2000:]
    recipe = _qat2_recipe(setup)
    state_dir = run / "qat2.state"
    state = json.loads((state_dir / "state.json").read_text())
    assert (state["step"], state["epoch"], state["position"]) == (6, 1, 2)
    saved = setup / "qat2-state-copy"
    shutil.copytree(state_dir, saved)

    resumed = _torchrun([str(VENV_BIN / "qtool"), "qat", "-r", str(recipe)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("resumed at step 6") == 1  # rank 0 alone prints
    assert not state_dir.exists()
    two_ranks_resumed = _weights(run / "qat2")

    # The reference: one process, uninterrupted, same global batches.
    ref_recipe = _qat2_recipe(setup, "one-ref")
    shutil.copytree(run / "calibrated", setup / "one-ref" / "calibrated")
    reference = _single("qat", ref_recipe)
    assert reference.steps == 8
    _assert_close(two_ranks_resumed, _weights(reference.output_dir), 1e-5, "resumed on 2")

    # The 2-rank state resumed by one process: the same global order, the same weights.
    shutil.copytree(saved, state_dir)
    from qtoolkit.pipeline.qat import run_qat
    from qtoolkit.recipe import load_recipe

    one_resumed = run_qat(load_recipe(recipe))
    assert one_resumed.resumed_step == 6 and one_resumed.steps == 8
    _assert_close(_weights(run / "qat2"), _weights(reference.output_dir), 1e-5, "resumed on 1")


def test_shards_and_factors():
    """Every row once whatever the world size; factors make DDP's mean of the ranks' mean losses
    the global batch's mean; a rank with no row runs row 0 at factor 0."""
    from qtoolkit.dist import shard_rows

    assert shard_rows(6) == (slice(0, 6), 1.0, 1.0)  # one process: the whole batch
    for n in (1, 5, 6):
        for world in (2, 3, 4):
            shards = [shard_rows(n, (r, world)) for r in range(world)]
            real = [(rows, f, share) for rows, f, share in shards if f > 0]
            assert [i for rows, _, _ in real for i in range(n)[rows]] == list(range(n))
            for rows, f, share in real:
                # DDP's mean over ranks of factor * (the rank's mean loss) weights each row by
                # factor / (world * rows of the rank): 1 / n, as one process does
                assert f / (world * len(range(n)[rows])) == pytest.approx(1 / n)
                assert share == pytest.approx(len(range(n)[rows]) / n)
            assert all(r == slice(0, 1) and s == 0 for r, f, s in shards if f == 0)


def test_peer_failures_print_nothing():
    from qtoolkit.dist import PeerFailure, failure_line
    from qtoolkit.errors import QtoolError

    assert failure_line(PeerFailure("x")) is None
    assert failure_line(QtoolError("bad key")) == "bad key"  # not launched: no rank named
