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


def test_a_num_labels_against_the_checkpoint_head_is_one_line(three_label_dir):
    from qtoolkit.errors import QtoolError

    with pytest.raises(QtoolError, match="model.num_labels is 5 but .* has a 3-label head"):
        load_model(ModelConfig(path=str(three_label_dir), num_labels=5))
    same = load_model(ModelConfig(path=str(three_label_dir), num_labels=3))
    assert same.model.classifier.out_features == 3


def test_bare_encoder_gets_two_labels(tmp_path):
    from transformers import BertModel

    bare = _save_checkpoint(tmp_path / "bare", bert_config(), BertModel)
    loaded = load_model(ModelConfig(path=str(bare)))
    assert loaded.model.classifier.out_features == 2 and loaded.newly_initialized
