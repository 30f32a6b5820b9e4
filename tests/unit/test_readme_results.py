"""README result tables are generated: each block re-renders from its docs/results JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script():
    path = ROOT / "scripts" / "update_readme.py"
    spec = importlib.util.spec_from_file_location("update_readme", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_block_matches_its_results_file():
    upd = _script()
    pages = upd.pages()
    assert ROOT / "README.md" in pages and len(pages) > 1, pages
    found = [(page, name, body) for page in pages for name, body in upd.blocks(page.read_text())]
    assert found, "no <!-- results:NAME --> block in README.md or docs/*.md"
    for page, name, body in found:
        assert body == upd.render(name, page=page), (
            f"{page.name}: block '{name}' is stale: run scripts/update_readme.py"
        )


def test_every_results_file_is_shown_somewhere():
    upd = _script()
    shown = {name for page in upd.pages() for name, _ in upd.blocks(page.read_text())}
    unused = {
        p.stem
        for p in (ROOT / "docs" / "results").glob("*.json")
        if "renderer" in json.loads(p.read_text()) or p.stem in upd.RENDERERS
    }
    assert unused - shown == set(), "results files with no block in README.md or docs/*.md"


def test_a_block_links_its_file_relative_to_its_page(tmp_path):
    upd = _script()
    text = "<!-- results:dist -->\n<!-- /results:dist -->\n"
    in_docs = upd.update(text, page=ROOT / "docs" / "x.md")
    in_root = upd.update(text, page=ROOT / "README.md")
    assert "(results/dist.json)" in in_docs and "(docs/results/dist.json)" in in_root


def test_every_results_file_names_its_machine():
    for path in sorted((ROOT / "docs" / "results").glob("*.json")):
        machine = json.loads(path.read_text()).get("machine") or {}
        assert machine.get("cpu") and machine.get("date"), path


def test_a_changed_figure_is_detected(tmp_path):
    upd = _script()
    data = {
        "renderer": "ptq",
        "machine": {"cpu": "Test CPU", "cores": 2, "date": "2026-01-01T00:00:00+00:00"},
        "primary_metric": "accuracy",
        "rows": [
            {"method": "fp32", "accuracy": 0.9, "dev": None, "calib_s": 0.0, "eval_s": 1.0},
            {
                "method": "max",
                "accuracy": 0.88,
                "dev": None,
                "delta_points": -2.0,
                "delta": {"value": -0.02, "low": -0.04, "high": -0.005, "level": 0.95},
                "agreement": 0.95,
                "agreement_interval": {"value": 0.95, "low": 0.93, "high": 0.97, "level": 0.95},
                "calib_s": 1.0,
                "eval_s": 1.0,
            },
        ],
    }
    (tmp_path / "t.json").write_text(json.dumps(data))
    text = "x\n<!-- results:t -->\nold\n<!-- /results:t -->\ny\n"
    new = upd.update(text, tmp_path)
    assert "-2.00 [-4.00, -0.50]" in new and "Test CPU" in new and "old" not in new
    assert upd.update(new, tmp_path) == new  # stable
    data["rows"][1]["delta"]["low"] = 0.001  # the figure changes: the block must change
    (tmp_path / "t.json").write_text(json.dumps(data))
    assert upd.update(new, tmp_path) != new
    with pytest.raises(SystemExit, match="no results file"):
        upd.update("<!-- results:missing -->\n<!-- /results:missing -->", tmp_path)
