"""The head size comes from the checkpoint when the recipe does not set model.num_labels."""

from __future__ import annotations

import pytest

from qtoolkit.models import load_model
from qtoolkit.recipe import ModelConfig

from ..conftest import _save_checkpoint, bert_config


@pytest.fixture(scope="module")
def three_label_dir(tmp_path_factory):
    from transformers import BertForSequenceClassification

    return _save_checkpoint(
        tmp_path_factory.mktemp("three"), bert_config(num_labels=3), BertForSequenceClassification
    )


def test_head_size_is_read_from_the_checkpoint(three_label_dir):
    loaded = load_model(ModelConfig(path=str(three_label_dir)))
    assert loaded.model.classifier.out_features == 3
    assert loaded.model.config.num_labels == 3
    assert not loaded.newly_initialized  # the trained 3-way head was loaded, not replaced


def test_an_explicit_num_labels_reinitialises_the_head_visibly(three_label_dir):
    # main's rule (issue 17): an explicit, different count re-initialises the head and says so.
    other = load_model(ModelConfig(path=str(three_label_dir), num_labels=5))
    assert other.model.classifier.out_features == 5
    assert any("classifier" in k for k in other.newly_initialized)
    same = load_model(ModelConfig(path=str(three_label_dir), num_labels=3))
    assert same.model.classifier.out_features == 3 and not same.newly_initialized


def test_bare_encoder_gets_two_labels(tmp_path):
    from transformers import BertModel

    bare = _save_checkpoint(tmp_path / "bare", bert_config(), BertModel)
    loaded = load_model(ModelConfig(path=str(bare)))
    assert loaded.model.classifier.out_features == 2 and loaded.newly_initialized
