"""Shared fixtures: tiny random BERT and SqueezeBERT checkpoints with a tiny word-piece vocab."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

WORDS = (
    "the a an is was and or but not very good bad movie film great terrible plot actor i you it "
    "this that of to in on for with love hate boring fun story quant int8 model fast slow"
).split()

SENTENCES = [
    "the movie was very good",
    "i hate this boring film",
    "a great story with a fun plot",
    "the actor was terrible and the plot was slow",
    "this is not a good movie",
    "i love it",
    "the int8 model is fast but the film is slow and boring and not very fun at all",
    "it was an ok film",
]


def _write_vocab(path: Path) -> Path:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!", "?", "'"]
    tokens += letters + [f"##{c}" for c in letters] + WORDS
    path.write_text("\n".join(dict.fromkeys(tokens)) + "\n")
    return path


def _tokenizer(dir_: Path):
    from transformers import BertTokenizerFast

    # transformers 5 ignores `vocab_file=` here (every word would become [UNK]); `vocab=` works.
    return BertTokenizerFast(vocab=str(_write_vocab(dir_ / "vocab.txt")), do_lower_case=True)


def _save_checkpoint(dir_: Path, config, model_cls, seed: int = 0) -> Path:
    import torch

    dir_.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer(dir_)
    config.vocab_size = len(tok)
    torch.manual_seed(seed)
    model = model_cls(config)
    model.save_pretrained(dir_)
    tok.save_pretrained(dir_)
    return dir_


def bert_config(**kw):
    from transformers import BertConfig

    base = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=2,
    )
    return BertConfig(**{**base, **kw})


def squeezebert_config(**kw):
    from transformers import SqueezeBertConfig

    base = dict(
        hidden_size=32,
        embedding_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        q_groups=2,
        k_groups=2,
        v_groups=2,
        post_attention_groups=2,
        intermediate_groups=4,
        output_groups=2,
        num_labels=2,
    )
    return SqueezeBertConfig(**{**base, **kw})


def _xdist_workers() -> int:
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def pytest_configure(config):
    """With several pytest-xdist workers, one PyTorch thread per worker process, from the start
    (session and module fixtures included): two workers with two OpenMP threads each on a 2-core
    machine wait at every op's barrier for a core, and a run slowed down several times over."""
    if _xdist_workers() > 1:
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _intra_op_threads(request):
    """One PyTorch thread per test, except the real-model integration tests when this is the
    only pytest process (they keep PyTorch's default, a thread per core). The tiny models gain
    nothing from a second thread, and on a 2-core machine shared with another process (a second
    pytest worker, a benchmark) every op with two OpenMP threads waits at its barrier for a core:
    a tiny conv1d took 30 ms instead of 0.05."""
    import torch

    before = torch.get_num_threads()
    wide = request.node.get_closest_marker("integration") and _xdist_workers() == 1
    torch.set_num_threads(before if wide else 1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    from transformers import BertForSequenceClassification

    return _save_checkpoint(
        tmp_path_factory.mktemp("tiny-bert"), bert_config(), BertForSequenceClassification
    )


@pytest.fixture(scope="session")
def tiny_squeezebert_dir(tmp_path_factory) -> Path:
    from transformers import SqueezeBertForSequenceClassification

    return _save_checkpoint(
        tmp_path_factory.mktemp("tiny-squeezebert"),
        squeezebert_config(),
        SqueezeBertForSequenceClassification,
    )


@pytest.fixture(params=["bert", "squeezebert"])
def tiny_dir(request, tiny_bert_dir, tiny_squeezebert_dir) -> Path:
    return {"bert": tiny_bert_dir, "squeezebert": tiny_squeezebert_dir}[request.param]


@pytest.fixture(scope="session")
def calib_jsonl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("calib") / "calib.jsonl"
    path.write_text("".join(json.dumps({"text": s}) + "\n" for s in SENTENCES * 4))
    return path


@pytest.fixture(scope="session")
def sample_batch(tiny_bert_dir):
    """Tokenized SENTENCES with padding, so attention masks are exercised."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    return dict(tok(SENTENCES, padding=True, return_tensors="pt"))


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, the first test file that needs the shared fine-tuned MiniLM
    (`sentiment_minilm`) goes first, so its worker fine-tunes while the others run the unit
    tests, and the other files that need it go last, when it is ready: no worker waits on it."""
    if _xdist_workers() <= 1:
        return
    needs = [item for item in items if "sentiment_minilm" in getattr(item, "fixturenames", ())]
    if not needs:
        return
    first = needs[0].path
    head = [item for item in items if item.path == first]
    tail = [item for item in needs if item.path != first]
    moved = {id(item) for item in head + tail}
    items[:] = head + [item for item in items if id(item) not in moved] + tail


def tree_digest(path) -> str:
    """sha256 over a file, or over every file below a folder (names and bytes): an input that a
    command must leave as it was."""
    import hashlib
    from pathlib import Path

    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()
