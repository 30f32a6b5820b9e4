"""QAT: recovery from weak PTQ, exact resume, distillation loss, learned amax, QA, SqueezeBERT."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from qtoolkit.errors import QtoolError
from qtoolkit.recipe import Recipe

from ..conftest import _write_vocab, bert_config

DATA = Path(__file__).resolve().parents[1] / "data"
POS = "good great love fun".split()
NEG = "bad terrible hate boring".split()
FILLER = "the a movie film plot actor story it this was is very".split()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tiny models gain nothing from threads, and on a shared machine OpenMP barriers make each
    # step up to 100x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _checkpoint(folder: Path, config, model_cls, seed: int = 0) -> Path:
    """A tiny random checkpoint whose tokenizer knows the toy words (`vocab=`: transformers 5
    ignores `vocab_file=` and would read every word as [UNK])."""
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True)
    tok = BertTokenizerFast(vocab=str(_write_vocab(folder / "vocab.txt")), do_lower_case=True)
    assert tok.tokenize("a good movie") == ["a", "good", "movie"]
    config.vocab_size = len(tok)
    torch.manual_seed(seed)
    model_cls(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _toy_rows(n: int, seed: int) -> list[dict]:
    """Label 1 when most of the 1, 3 or 5 sentiment words among the filler are positive: the
    model has to count, which quantized attention does less exactly."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        k = rng.choice([1, 3, 5])
        n_pos = rng.randint(0, k)
        words = rng.choices(FILLER, k=rng.randint(2, 5))
        for w in rng.choices(POS, k=n_pos) + rng.choices(NEG, k=k - n_pos):
            words.insert(rng.randint(0, len(words)), w)
        rows.append({"text": " ".join(words), "label": int(2 * n_pos > k)})
    return rows


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("toy")
    for name, n, seed in (("train", 768, 1), ("dev", 128, 2), ("test", 512, 3)):
        rows = _toy_rows(n, seed)
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _recipe(out: Path, checkpoint: Path, folder: Path, **sections) -> Recipe:
    base = {
        "output_dir": str(out),
        "model": {"path": str(checkpoint)},
        "data": {
            "train_file": str(folder / "train.jsonl"),
            "eval_file": str(folder / "dev.jsonl"),
            "calib_file": str(folder / "train.jsonl"),
            "max_length": 16,
        },
        "calib": {"method": "max", "num_samples": 64, "batch_size": 32},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return Recipe.model_validate(base)


@pytest.fixture(scope="module")
def toy_finetuned(tmp_path_factory, toy) -> Path:
    """A tiny BERT (no dropout) fine-tuned to convergence on the toy task: fp32 checkpoint."""
    from transformers import BertForSequenceClassification

    from qtoolkit.pipeline.finetune import run_finetune

    root = tmp_path_factory.mktemp("toy-bert")
    config = bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = _checkpoint(root / "init", config, BertForSequenceClassification)
    ft = {"epochs": 8, "batch_size": 32, "learning_rate": 3e-3, "warmup_ratio": 0.0}
    outcome = run_finetune(_recipe(root / "run", model, toy, finetune=ft))
    assert outcome.best_metric > 0.95
    return outcome.output_dir


def _test_loss(model, tokenizer, toy: Path) -> tuple[float, float]:
    rows = [json.loads(line) for line in (toy / "test.jsonl").read_text().splitlines()]
    batch = tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")
    labels = torch.tensor([r["label"] for r in rows])
    with torch.no_grad():
        logits = model.eval()(**batch).logits
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(-1) == labels).float().mean().item()


def test_qat_recovers_weak_ptq(tmp_path, toy, toy_finetuned):
    from qtoolkit.models import load_model
    from qtoolkit.pipeline.qat import run_qat
    from qtoolkit.quant import load_quantized

    # 3-bit, max calibration: PTQ of the converged fp32 model loses a lot on held-out data.
    # Plain QAT on the labels, chosen by the task metric (today's recipes with distill off).
    recipe = _recipe(
        tmp_path,
        toy_finetuned,
        toy,
        finetune={"output_dir": str(toy_finetuned)},
        quant={"num_bits": 3},
        qat={"epochs": 2, "batch_size": 32, "learning_rate": 3e-4}
        | {"distill": False, "select": "metric", "evals_per_epoch": 1, "dropout": True},
    )
    outcome = run_qat(recipe)
    assert outcome.calibrated_now and outcome.steps == 48 and outcome.resumed_step == 0
    assert [(r["epoch"], r["step"]) for r in outcome.history] == [(1, 24), (2, 48)]
    assert "agreement" not in outcome.history[0] and "accuracy" in outcome.start_metrics

    fp32 = load_model(recipe.model.model_copy(update={"path": str(toy_finetuned)}))
    fp32_loss, _ = _test_loss(fp32.model, fp32.tokenizer, toy)
    ptq_model = load_quantized(outcome.calibrated_dir).model
    ptq_loss, ptq_acc = _test_loss(ptq_model, fp32.tokenizer, toy)
    qat_loss, qat_acc = _test_loss(load_quantized(outcome.output_dir).model, fp32.tokenizer, toy)
    assert ptq_loss > 3 * fp32_loss  # the PTQ baseline really is weak ...
    assert qat_loss < 0.6 * ptq_loss  # ... and QAT wins back most of the gap
    assert qat_acc >= ptq_acc
    manifest = json.loads((outcome.output_dir / "qtoolkit.json").read_text())
    assert manifest["stage"] == "qat" and manifest["quant"]["num_bits"] == 3
    assert manifest["qat"]["learning_rate"] == 3e-4 and len(manifest["history"]) == 2
    assert manifest["start_metrics"] == outcome.start_metrics
    assert not (tmp_path / "qat.state").exists()  # removed once the run finished


def test_learned_amax_moves_and_the_checkpoint_reloads(tmp_path, toy, toy_finetuned):
    from qtoolkit.pipeline.evaluate import run_evaluate
    from qtoolkit.pipeline.qat import run_qat

    recipe = _recipe(
        tmp_path,
        toy_finetuned,
        toy,
        finetune={"output_dir": str(toy_finetuned)},
        quant={"num_bits": 3},
        qat={"epochs": 1, "batch_size": 32, "learn_amax": True, "amax_learning_rate": 1e-2}
        | {"learning_rate": 3e-4, "temperature": 1.0},
    )
    outcome = run_qat(recipe)
    assert outcome.best_step > 0  # a trained step, not the start, was kept
    before = {r["name"]: r for r in json.loads((tmp_path / "calibrated/amax.json").read_text())}
    after = {r["name"]: r for r in json.loads((tmp_path / "qat/amax.json").read_text())}
    assert before.keys() == after.keys()
    activations = {n for n, r in before.items() if r["kind"] == "activation" and r["enabled"]}
    assert outcome.learned_amax == len(activations) > 20
    assert {n for n, r in after.items() if r != before[n]} == activations
    assert all(after[n] == r for n, r in before.items() if r["kind"] == "weight")
    # The reloaded checkpoint computes what the in-memory model computed at its best epoch.
    evaluated = run_evaluate(outcome.output_dir, recipe, data_file=toy / "dev.jsonl")
    assert evaluated.backend == "torch-fakequant"
    assert evaluated.metrics[outcome.primary_metric] == outcome.best_metric


def test_learnable_amax_round_trip(tiny_bert_dir, sample_batch, tmp_path):
    from pytorch_quantization.nn import TensorQuantizer

    from qtoolkit.models import load_model
    from qtoolkit.quant import (
        calibrate,
        insert_quantizers,
        iter_quantizers,
        load_quantized,
        save_quantized,
    )
    from qtoolkit.recipe import CalibConfig, ModelConfig, QuantConfig
    from qtoolkit.train.learned_amax import LearnedAmaxQuantizer, learnable_amax, plain_amax

    loaded = load_model(ModelConfig(path=str(tiny_bert_dir)))
    model, cfg = loaded.model, QuantConfig(num_bits=4)
    insert_quantizers(model, cfg)
    calibrate(model, lambda m: m(**sample_batch), CalibConfig(method="max"))
    keys = list(model.state_dict())
    start = {n: q._amax.clone() for n, q in iter_quantizers(model)}
    with learnable_amax(model) as learned:
        assert {n for n, _ in learned} == {n for n in start if not n.endswith("weight_quantizer")}
        optimizer = torch.optim.Adam([p for _, p in learned], lr=0.05)
        labels = torch.tensor([0, 1] * 4)
        for _ in range(3):
            model(**sample_batch, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        with torch.no_grad():
            logits = model(**sample_batch).logits
        with plain_amax(model):
            assert all(type(q) is TensorQuantizer for _, q in iter_quantizers(model))
            save_quantized(model, loaded.tokenizer, tmp_path / "ckpt", cfg)
        quantizers = dict(iter_quantizers(model))
        assert all(isinstance(quantizers[n], LearnedAmaxQuantizer) for n, _ in learned)
        assert all(dict(model.named_parameters())[f"{n}._amax"] is p for n, p in learned)
    assert list(model.state_dict()) == keys
    for name, quantizer in iter_quantizers(model):
        assert type(quantizer) is TensorQuantizer and "_amax" in quantizer._buffers
        assert torch.equal(quantizer._amax, start[name]) == name.endswith("weight_quantizer"), name
    back = load_quantized(tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.equal(back.model(**sample_batch).logits, logits)


def test_lsq_fake_quant_matches_pytorch_quantization_and_hand_gradients():
    from pytorch_quantization.tensor_quant import fake_tensor_quant

    from qtoolkit.train.learned_amax import lsq_fake_quant

    torch.manual_seed(0)
    x = torch.randn(4, 8) * 3
    for amax in (torch.tensor(2.5), torch.rand(4, 1) + 0.5):
        assert torch.equal(lsq_fake_quant(x, amax, 8), fake_tensor_quant(x, amax, 8))

    x = torch.tensor([0.1, 0.26, -0.9, 2.0], requires_grad=True)
    amax = torch.tensor(1.0, requires_grad=True)
    lsq_fake_quant(x, amax, num_bits=4).sum().backward()  # max bound 7
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 0.0]  # straight through inside [-amax, amax]
    inside = [(round(v * 7) - v * 7) / 7 for v in (0.1, 0.26, -0.9)]
    expected = (sum(inside) + 1.0) / math.sqrt(4 * 7)  # 2.0 clips to +amax: d/damax = 1
    assert amax.grad.item() == pytest.approx(expected, rel=1e-5)


def test_distillation_loss_matches_hand_computation():
    from qtoolkit.train.distill import (
        DistillSettings,
        distillation_loss,
        hidden_mse_loss,
        kd_loss,
        logits_kd_loss,
    )

    def softmax(row, t):
        exps = [math.exp(v / t) for v in row]
        return [e / sum(exps) for e in exps]

    def hand_kd(student, teacher, t):
        total = 0.0
        for s_row, t_row in zip(student, teacher, strict=True):
            p_s, p_t = softmax(s_row, t), softmax(t_row, t)
            total += sum(a * (math.log(a) - math.log(b)) for a, b in zip(p_t, p_s, strict=True))
        return total / len(student) * t * t

    s = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    t = [[2.0, 1.0, 0.0], [0.5, 0.5, 1.0]]
    kd = hand_kd(s, t, 2.0)
    assert kd_loss(torch.tensor(s), torch.tensor(t), 2.0).item() == pytest.approx(kd, rel=1e-5)
    assert kd_loss(torch.tensor(t), torch.tensor(t), 2.0).item() == pytest.approx(0.0, abs=1e-7)

    # QA: the mean of the start and end terms.
    start_s, end_s = [[0.0, 1.0, 4.0, 0.0]], [[2.0, 0.0, 0.0, 1.0]]
    start_t, end_t = [[0.0, 0.0, 3.0, 0.0]], [[1.0, 1.0, 0.0, 2.0]]
    student = SimpleNamespace(start_logits=torch.tensor(start_s), end_logits=torch.tensor(end_s))
    teacher = SimpleNamespace(start_logits=torch.tensor(start_t), end_logits=torch.tensor(end_t))
    qa = (hand_kd(start_s, start_t, 3.0) + hand_kd(end_s, end_t, 3.0)) / 2
    assert logits_kd_loss(student, teacher, 3.0).item() == pytest.approx(qa, rel=1e-5)

    # Hidden-state MSE over real tokens only (position 2 of the first row is padding).
    h_s = [torch.tensor([[[1.0, 2.0], [0.0, 0.0], [9.0, 9.0]]]), torch.zeros(1, 3, 2)]
    h_t = [torch.tensor([[[0.0, 2.0], [1.0, 1.0], [0.0, 0.0]]]), torch.ones(1, 3, 2)]
    mask = torch.tensor([[1, 1, 0]])
    mse = ((1 + 0 + 1 + 1) / 4 + 1.0) / 2
    assert hidden_mse_loss(h_s, h_t, mask).item() == pytest.approx(mse)

    student = SimpleNamespace(logits=torch.tensor(s), hidden_states=h_s)
    teacher = SimpleNamespace(logits=torch.tensor(t), hidden_states=h_t)
    settings = DistillSettings(temperature=2.0, label_weight=0.75, hidden_mse_weight=0.5)
    total = distillation_loss(torch.tensor(0.7), student, teacher, settings, mask)
    assert total.item() == pytest.approx(0.75 * 0.7 + 0.25 * kd + 0.5 * mse, rel=1e-5)


@pytest.mark.parametrize(
    ("arch", "task"), [("bert", "question-answering"), ("squeezebert", "sequence-classification")]
)
def test_qat_smoke_with_distillation(
    tmp_path, arch, task, tiny_bert_dir, tiny_squeezebert_dir, toy
):
    from qtoolkit.pipeline.finetune import run_finetune
    from qtoolkit.pipeline.qat import run_qat
    from qtoolkit.quant import load_quantized

    model = {"bert": tiny_bert_dir, "squeezebert": tiny_squeezebert_dir}[arch]
    data = {"max_length": 48}
    if task == "question-answering":
        squad = str(DATA / "tiny_squad.json")
        data |= {"train_file": squad, "eval_file": squad, "calib_file": str(toy / "dev.jsonl")}
    recipe = _recipe(
        tmp_path,
        model,
        toy,
        model={"task": task},
        data=data,
        finetune={"max_steps": 2, "batch_size": 4},
        qat={"epochs": 2, "max_steps": 3, "batch_size": 4, "train_limit": 12, "save_every_steps": 2}
        | {"distill": True, "hidden_mse_weight": 0.5, "learn_amax": True},
    )
    run_finetune(recipe)
    outcome = run_qat(recipe)
    assert outcome.distilled and outcome.steps == 3 and outcome.learned_amax > 0
    assert outcome.primary_metric == ("f1" if task == "question-answering" else "accuracy")
    assert math.isfinite(outcome.history[-1]["loss"])
    ckpt = load_quantized(outcome.output_dir)
    assert ckpt.manifest["task"] == task and ckpt.manifest["architecture"] == arch
    assert ckpt.manifest["teacher"] == str(tmp_path / "finetuned")


def test_qat_errors_are_one_line(tmp_path, tiny_bert_dir, toy):
    from qtoolkit.pipeline.qat import run_qat

    no_data = _recipe(tmp_path, tiny_bert_dir, toy, data={"train_file": None})
    with pytest.raises(QtoolError, match="QAT needs data.train_file"):
        run_qat(no_data)
    # A QA head the checkpoint does not have, and no fine-tuned checkpoint: no teacher.
    qa = _recipe(tmp_path, tiny_bert_dir, toy, model={"task": "question-answering"})
    qa = qa.model_copy(update={"qat": qa.qat.model_copy(update={"distill": True})})
    with pytest.raises(QtoolError, match="run qtool finetune first") as err:
        run_qat(qa)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "calibrated").exists()  # failed before calibrating
    no_calib = _recipe(tmp_path, tiny_bert_dir, toy, data={"calib_file": None})
    with pytest.raises(QtoolError, match="no calibrated checkpoint"):
        run_qat(no_calib)


class _Crash(Exception):
    """Stands in for a kill: raised from inside a training step."""


def _crash_at_step(monkeypatch, step: int) -> None:
    """Make training die during step `step` (after its backward, before its optimizer step)."""
    real = torch.nn.utils.clip_grad_norm_
    calls = {"n": 0}

    def clip(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step:
            raise _Crash(f"killed in step {step}")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)


def _without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


@pytest.fixture(scope="module")
def dropout_finetuned(tmp_path_factory, toy) -> Path:
    """A briefly fine-tuned tiny BERT with dropout on, so resuming must restore the RNG."""
    from transformers import BertForSequenceClassification

    from qtoolkit.pipeline.finetune import run_finetune

    root = tmp_path_factory.mktemp("dropout-bert")
    model = _checkpoint(root / "init", bert_config(), BertForSequenceClassification, seed=1)
    ft = {"max_steps": 4, "batch_size": 16, "learning_rate": 1e-3}
    return run_finetune(_recipe(root / "run", model, toy, finetune=ft)).output_dir


def test_interrupted_qat_resumes_to_the_same_weights(tmp_path, monkeypatch, toy, dropout_finetuned):
    from qtoolkit.pipeline.qat import run_qat

    def recipe(name: str, **qat) -> Recipe:
        return _recipe(
            tmp_path / name,
            dropout_finetuned,
            toy,
            finetune={"output_dir": str(dropout_finetuned)},
            calib={"output_dir": str(tmp_path / "calibrated")},  # one PTQ start for every run
            quant={"num_bits": 4},  # a PTQ start that training beats
            # 10 steps in one epoch, evaluated after steps 4, 7 and 10 (and the start), the best
            # kept by agreement with fp32; distillation without labels, hidden MSE, dropout and
            # learned amax (frozen after step 5) all carry state.
            qat={"epochs": 1, "batch_size": 4, "train_limit": 40, "learning_rate": 1e-3}
            | {"distill": True, "label_weight": 0.0, "hidden_mse_weight": 0.1, "dropout": True}
            | {"learn_amax": True, "freeze_amax_after": 0.5, "evals_per_epoch": 3}
            | {"select": "agreement", "save_every_steps": 3, **qat},
        )

    reference = run_qat(recipe("reference"))
    assert reference.steps == 10 and reference.best_step > 0
    assert [r["step"] for r in reference.history] == [0, 4, 7, 10]
    assert all(
        0 <= r["agreement_low"] <= r["agreement"] <= r["agreement_high"] <= 1
        for r in reference.history
    )

    _crash_at_step(monkeypatch, 8)
    with pytest.raises(_Crash):
        run_qat(recipe("resumed"))
    monkeypatch.undo()
    state = json.loads((tmp_path / "resumed/qat.state/state.json").read_text())
    assert state == {**state, "step": 6, "position": 6, "epoch": 0}  # the last save, mid-epoch
    with pytest.raises(QtoolError, match="other settings"):
        run_qat(recipe("resumed", learning_rate=2e-3))
    resumed = run_qat(recipe("resumed"))
    assert resumed.resumed_step == 6 and resumed.steps == 10
    assert not (tmp_path / "resumed/qat.state").exists()

    _crash_at_step(monkeypatch, 5)
    with pytest.raises(_Crash):
        run_qat(recipe("restarted"))
    monkeypatch.undo()
    restarted = run_qat(recipe("restarted", resume=False))
    assert restarted.resumed_step == 0

    from safetensors.torch import load_file

    want = load_file(reference.output_dir / "model.safetensors")
    assert any(k.endswith("input_quantizer._amax") for k in want)
    for run in (resumed, restarted):
        assert _without_seconds(run.history) == _without_seconds(reference.history)
        got = load_file(run.output_dir / "model.safetensors")
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want), run.output_dir


def test_train_loop_resumes_across_epochs(tmp_path, monkeypatch, toy):
    """The loop alone: two epochs, killed in the second, resumed from a mid-epoch state."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    from qtoolkit.recipe import DataConfig
    from qtoolkit.tasks import get_task
    from qtoolkit.train.loop import Checkpointing, TrainSettings, train

    folder = _checkpoint(tmp_path / "m", bert_config(), BertForSequenceClassification, seed=2)
    task = get_task("sequence-classification")
    examples = task.read(toy / "train.jsonl", DataConfig(), limit=24)
    data = task.encode(AutoTokenizer.from_pretrained(folder), examples, 16, {0: 0, 1: 1})
    settings = TrainSettings(epochs=2, learning_rate=1e-3, batch_size=4, seed=3)  # 12 steps

    def run(state_dir: Path):
        model = BertForSequenceClassification.from_pretrained(folder)
        best: list[int] = []
        outcome = train(
            model,
            data,
            settings,
            evaluate=lambda m: {"score": 0.0},  # a tie is no improvement: epoch 1 stays best
            primary_metric="score",
            save_best=lambda m, record: best.append(record["epoch"]),
            checkpointing=Checkpointing(state_dir, every_steps=4),
        )
        return model, outcome, best

    want, reference, _ = run(tmp_path / "a")
    _crash_at_step(monkeypatch, 11)  # in epoch 2 (steps 7-12); last save at step 8
    with pytest.raises(_Crash):
        run(tmp_path / "b")
    monkeypatch.undo()
    got, outcome, best = run(tmp_path / "b")
    assert outcome.resumed_step == 8 and outcome.steps == 12 and not best
    assert outcome.best_epoch == reference.best_epoch == 1
    assert _without_seconds(outcome.history) == _without_seconds(reference.history)
    for (name, a), (_, b) in zip(want.state_dict().items(), got.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def _kl_to(teacher, student, tokenizer, toy: Path, split: str = "test") -> float:
    """Mean KL(p_fp32 || p_int8) over a split's sentences."""
    rows = [json.loads(line) for line in (toy / f"{split}.jsonl").read_text().splitlines()]
    batch = tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")
    with torch.no_grad():
        t = torch.log_softmax(teacher.eval()(**batch).logits, -1)
        s = torch.log_softmax(student.eval()(**batch).logits, -1)
    return float((t.exp() * (t - s)).sum(-1).mean())


def test_distillation_only_qat_lowers_the_kl_to_the_teacher(tmp_path, toy, toy_finetuned):
    from qtoolkit.models import load_model
    from qtoolkit.pipeline.qat import run_qat
    from qtoolkit.quant import load_quantized

    recipe = _recipe(
        tmp_path,
        toy_finetuned,
        toy,
        finetune={"output_dir": str(toy_finetuned)},
        quant={"num_bits": 4},
        qat={"epochs": 2, "batch_size": 32, "learning_rate": 3e-4, "label_weight": 0.0}
        | {"temperature": 1.0, "evals_per_epoch": 2, "save_every_steps": None},
    )
    outcome = run_qat(recipe)
    assert outcome.distilled and outcome.select == "agreement" and outcome.best_step > 0
    fp32 = load_model(recipe.model.model_copy(update={"path": str(toy_finetuned)}))
    ptq = load_quantized(outcome.calibrated_dir).model
    qat = load_quantized(outcome.output_dir).model
    # On held-out sentences (test), not the dev split the step was chosen on.
    ptq_kl = _kl_to(fp32.model, ptq, fp32.tokenizer, toy)
    qat_kl = _kl_to(fp32.model, qat, fp32.tokenizer, toy)
    assert ptq_kl > 1e-3 and qat_kl < 0.5 * ptq_kl, (ptq_kl, qat_kl)
    # The logged dev KL went down too, and the kept step has the best dev agreement.
    assert outcome.best["kl"] < outcome.start_metrics["kl"]
    assert outcome.best["agreement"] == max(r["agreement"] for r in outcome.history)


def test_label_weight_0_ignores_labels(tmp_path, toy, toy_finetuned):
    from safetensors.torch import load_file

    from qtoolkit.pipeline.calibrate import run_calibrate
    from qtoolkit.pipeline.qat import run_qat

    rows = [json.loads(line) for line in (toy / "train.jsonl").read_text().splitlines()][:96]
    files = {
        "labels": rows,
        "flipped": [{**r, "label": 1 - r["label"]} for r in rows],
        "none": [{"text": r["text"]} for r in rows],  # plain text: no label field at all
    }
    for name, content in files.items():
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in content))

    def recipe(name: str, **qat) -> Recipe:
        return _recipe(
            tmp_path / name,
            toy_finetuned,
            toy,
            finetune={"output_dir": str(toy_finetuned)},
            data={"train_file": str(tmp_path / f"{name}.jsonl")},
            calib={"output_dir": str(tmp_path / "calibrated")},
            quant={"num_bits": 4},
            qat={"max_steps": 4, "batch_size": 16, "learning_rate": 1e-3, "dropout": True}
            | {"label_weight": 0.0, "evals_per_epoch": 2, "save_every_steps": None}
            # Selected by the metric: the start never competes, so a trained model is saved.
            | {"select": "metric", **qat},
        )

    run_calibrate(recipe("labels"))
    outcomes = {name: run_qat(recipe(name)) for name in files}
    assert all(o.best_step > 0 for o in outcomes.values())
    want = load_file(outcomes["labels"].output_dir / "model.safetensors")
    for name in ("flipped", "none"):
        got = load_file(outcomes[name].output_dir / "model.safetensors")
        assert all(torch.equal(got[k], want[k]) for k in want), name
        assert _without_seconds(outcomes[name].history) == _without_seconds(
            outcomes["labels"].history
        )
    manifest = json.loads((outcomes["none"].output_dir / "qtoolkit.json").read_text())
    assert manifest["labels_used"] is False and manifest["num_train"] == 96
    # With a label weight the labels count: flipped labels train another model, and a file
    # without labels is refused.
    weighted = {n: run_qat(recipe(n, label_weight=0.5)) for n in ("labels", "flipped")}
    a, b = (load_file(o.output_dir / "model.safetensors") for o in weighted.values())
    assert any(not torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(QtoolError, match="needs a 'label' field"):
        run_qat(recipe("none", label_weight=0.5))


def test_qat_starts_from_a_quantize_folder(tmp_path, toy, toy_finetuned):
    import shutil

    from qtoolkit.pipeline.calibrate import run_calibrate
    from qtoolkit.pipeline.qat import run_qat
    from qtoolkit.pipeline.qat_start import resolve_start

    base = {"finetune": {"output_dir": str(toy_finetuned)}, "quant": {"num_bits": 4}}
    calibrated = run_calibrate(_recipe(tmp_path / "ptq", toy_finetuned, toy, **base)).output_dir
    folder = tmp_path / "quantized"
    shutil.copytree(calibrated, folder / "checkpoint")  # what qtool quantize -o folder holds
    assert resolve_start(folder) == folder / "checkpoint"
    assert resolve_start(calibrated) == calibrated
    with pytest.raises(QtoolError, match="is not a quantized checkpoint"):
        resolve_start(toy_finetuned)

    qat = {"max_steps": 2, "batch_size": 16, "start_from": str(folder), "save_every_steps": None}
    outcome = run_qat(_recipe(tmp_path / "run", toy_finetuned, toy, **base, qat=qat))
    assert outcome.calibrated_dir == folder / "checkpoint" and not outcome.calibrated_now
    assert not (tmp_path / "run/calibrated").exists()  # the recipe's calibrate stage never ran
    manifest = json.loads((outcome.output_dir / "qtoolkit.json").read_text())
    assert manifest["calibrated_from"] == str(folder / "checkpoint")
    assert manifest["quant"]["num_bits"] == 4


def test_eval_positions_and_frozen_amax_schedule():
    from qtoolkit.train.loop import _scheduler, eval_positions

    assert eval_positions(10, 3) == {4, 7, 10}
    assert eval_positions(10, 1) == {10}
    assert eval_positions(2, 4) == {1, 2}  # never more evaluations than steps
    weight, amax = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    optimizer = torch.optim.AdamW(
        [{"params": [weight]}, {"params": [amax], "frozen_after": 3, "weight_decay": 0.0}], lr=0.1
    )
    scheduler = _scheduler(optimizer, warmup=2, total=10)
    lrs = []
    for _ in range(6):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        (weight * amax).sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    assert [w for w, _ in lrs] == pytest.approx([0.0, 0.05, 0.1, 0.0875, 0.075, 0.0625])
    assert [a for _, a in lrs] == pytest.approx([0.0, 0.05, 0.1, 0.0, 0.0, 0.0])
    frozen = amax.detach().clone()
    (weight * amax).sum().backward()
    optimizer.step()
    assert torch.equal(amax.detach(), frozen)  # lr 0: AdamW leaves it exactly as it is


def test_qat_recipe_keys():
    from qtoolkit.recipe import Recipe

    assert Recipe.model_validate({"qat": {"distill_weight": 0.75}}).qat.label_weight == 0.25
    with pytest.raises(ValueError, match="not both"):
        Recipe.model_validate({"qat": {"distill_weight": 0.5, "label_weight": 0.5}})
    with pytest.raises(ValueError, match="needs learn_amax"):
        Recipe.model_validate({"qat": {"freeze_amax_after": 0.1}})


def test_hidden_mse_refused_after_layernorm_smoothquant():
    from qtoolkit.pipeline.qat_start import check_hidden_mse

    folded = {"smoothquant": {"alpha": 0.5, "sites": ["qkv", "attn_out"]}}
    with pytest.raises(QtoolError, match="folded at qkv"):
        check_hidden_mse(folded, 0.1)
    check_hidden_mse(folded, 0.0)
    check_hidden_mse({"smoothquant": {"alpha": 0.5, "sites": ["attn_out"]}}, 0.1)


def test_cli_qat_from_a_checkpoint_on_unlabelled_text(tmp_path, toy, toy_finetuned):
    from typer.testing import CliRunner

    from qtoolkit.cli import app
    from qtoolkit.pipeline.calibrate import run_calibrate

    base = {"finetune": {"output_dir": str(toy_finetuned)}, "quant": {"num_bits": 4}}
    start = run_calibrate(_recipe(tmp_path / "ptq", toy_finetuned, toy, **base)).output_dir
    rows = [json.loads(line) for line in (toy / "train.jsonl").read_text().splitlines()][:64]
    text = tmp_path / "sentences.jsonl"
    text.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in rows))
    out = tmp_path / "qat"
    argv = ["qat", "--from", start, "--set", f"model.path={toy_finetuned}", "--set",
            "data.max_length=16", "--train-file", text, "--eval-file", toy / "dev.jsonl",
            "--epochs", 1, "--batch-size", 16, "--evals-per-epoch", 2, "--label-weight", 0,
            "--temperature", 1, "--lr", 3e-4, "--device", "cpu", "-o", out]  # fmt: skip
    result = CliRunner().invoke(app, [str(a) for a in argv])
    assert result.exit_code == 0, result.output
    # One line per evaluation with agreement and its interval; the kept step named.
    assert result.output.count("agreement with fp32") >= 3
    assert "start (PTQ): loss" not in result.output and "wrote" in result.output
    manifest = json.loads((out / "qtoolkit.json").read_text())
    assert manifest["calibrated_from"] == str(start) and manifest["labels_used"] is False
    assert manifest["qat"]["temperature"] == 1 and [r["step"] for r in manifest["history"]] == [
        0,
        2,
        4,
    ]
