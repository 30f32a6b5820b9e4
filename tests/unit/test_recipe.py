from __future__ import annotations

from pathlib import Path

import pytest

from qtoolkit.errors import QtoolError
from qtoolkit.recipe import Recipe, load_recipe

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_valid():
    r = load_recipe(None)
    assert r.calib.method == "percentile" and r.quant.residual_add


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("calib:\n  methd: mse\n")
    with pytest.raises(QtoolError) as err:
        load_recipe(path)
    assert "calib.methd" in str(err.value) and str(path) in str(err.value)


def test_bad_value_is_explained(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("calib:\n  method: kl\n")
    with pytest.raises(QtoolError, match="calib.method"):
        load_recipe(path)


def test_overrides_beat_the_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("calib:\n  method: mse\n  percentile: 99.0\n")
    r = load_recipe(path, ["calib.percentile=99.999", "quant.skip=[classifier]"])
    assert r.calib.method == "mse" and r.calib.percentile == 99.999
    assert r.quant.skip == ["classifier"]


def test_unknown_override_key_is_rejected():
    with pytest.raises(QtoolError, match="unknown key 'calib.nope'"):
        load_recipe(None, ["calib.nope=1"])


def test_future_version_is_rejected(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("version: 99\n")
    with pytest.raises(QtoolError, match="version"):
        load_recipe(path)


def test_not_yaml_mapping(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(QtoolError, match="mapping"):
        load_recipe(path)


def test_stage_dirs():
    r = Recipe.model_validate({"output_dir": "runs/x", "calib": {"output_dir": "elsewhere"}})
    assert r.stage_dir("calibrated") == Path("elsewhere")
    assert r.stage_dir("export") == Path("runs/x/export")


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_load(path):
    assert isinstance(load_recipe(path), Recipe)
