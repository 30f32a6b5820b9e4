"""Engines from tiny qtool exports of BERT and SqueezeBERT (three inputs, INT8, fp32 or --fp16),
compared with ONNX Runtime CPU on the same inputs; the inspector must report INT8 layers.

Also: CUDA calibration and a few QAT steps with the autocast fp16 teacher, and the generated
.trtexec.sh when trtexec is on PATH. Marked `gpu` (skipped without CUDA and TensorRT), except
`test_tiny_exports_on_cpu`, which checks the exports themselves so that a GPU failure is
TensorRT's and not the export's.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from qtoolkit.engine import EngineRunner, build_engine, read_onnx
from qtoolkit.errors import QtoolError
from qtoolkit.recipe import EngineConfig

from .tiny_exports import INPUTS, feeds, tiny_export

CONFIG = EngineConfig(min_shape=(1, 8), opt_shape=(4, 16), max_shape=(8, 32), workspace_mib=512)


def _ort_cpu(onnx_path, inputs) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, inputs), strict=True))


@pytest.fixture(params=["bert", "squeezebert"])
def model_dir(request, tiny_bert_dir, tiny_squeezebert_dir):
    return {"bert": tiny_bert_dir, "squeezebert": tiny_squeezebert_dir}[request.param]


def test_tiny_exports_on_cpu(model_dir, tmp_path):
    result, _ = tiny_export(model_dir, tmp_path / "m.onnx", fp16=True)
    summary = read_onnx(result.path)
    assert [i.name for i in summary.inputs] == list(INPUTS)
    assert summary.has_qdq and summary.has_fp16
    logits = _ort_cpu(result.path, feeds())["logits"]
    assert logits.shape == (4, 2) and np.isfinite(logits).all()


@pytest.mark.gpu
@pytest.mark.parametrize("fp16", [False, True], ids=["fp32-export", "fp16-export"])
def test_engine_matches_ort_cpu_and_runs_int8(model_dir, fp16, tmp_path):
    result, _ = tiny_export(model_dir, tmp_path / "model.onnx", fp16=fp16)
    build = build_engine(result.path, tmp_path / "model.engine", CONFIG)
    report = json.loads(build.report_path.read_text())
    assert [p["input"] for p in report["profiles"]] == list(INPUTS)
    assert "error" not in report["layers"], report["layers"]
    assert report["layers"]["by_precision"].get("INT8", 0) > 0, report["layers"]["by_precision"]

    runner = EngineRunner(build.engine_path)
    assert sorted(runner.input_names) == sorted(INPUTS)
    inputs = feeds()
    got = runner.run(inputs)["logits"].astype(np.float32)
    want = _ort_cpu(result.path, inputs)["logits"].astype(np.float32)
    # INT8 on both sides, different kernels and (TensorRT 10) fp16 elsewhere: close, not equal.
    diff = float(np.abs(got - want).max())
    scale = float(np.abs(want).max())
    assert diff <= 0.1 * scale + 0.05, f"max |TensorRT - ORT| = {diff:.4f} (scale {scale:.4f})"

    timed = runner.benchmark(inputs, warmup=3, iterations=10)
    assert len(timed.latencies_ms) == 10 and timed.median_ms > 0
    too_long = feeds(rows=2, length=64)
    with pytest.raises(QtoolError, match="outside the engine's profile"):
        runner.run(too_long)


@pytest.mark.gpu
def test_trtexec_script_builds_the_same_engine(tiny_bert_dir, tmp_path):
    trtexec = shutil.which("trtexec")
    if trtexec is None:
        pytest.skip("trtexec is not on PATH (NGC images have it in /usr/src/tensorrt/bin)")
    result, _ = tiny_export(tiny_bert_dir, tmp_path / "model.onnx", fp16=True)
    build = build_engine(result.path, tmp_path / "model.engine", CONFIG)
    build.engine_path.unlink()
    out = subprocess.run(
        ["sh", str(build.trtexec_script)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert build.engine_path.stat().st_size > 0
    EngineRunner(build.engine_path).run(feeds())  # trtexec's engine loads and runs


@pytest.mark.gpu
def test_cuda_calibration_and_qat_steps_with_autocast_teacher(tiny_bert_dir):
    import torch

    from qtoolkit.models import load_model
    from qtoolkit.quant import calibrate, insert_quantizers
    from qtoolkit.recipe import CalibConfig, ModelConfig, QuantConfig
    from qtoolkit.train.distill import DistillSettings, make_qat_loss

    from ..unit.test_export import INIT_RANGE, VOCAB, _batch

    def model():
        cfg = ModelConfig(
            path=str(tiny_bert_dir),
            task="sequence-classification",
            random_init=True,
            config_overrides={"initializer_range": INIT_RANGE, "vocab_size": VOCAB},
        )
        return load_model(cfg).model.cuda()

    teacher = model().eval()
    student = model()
    student.load_state_dict(teacher.state_dict())
    insert_quantizers(student, QuantConfig())
    student.cuda()
    batches = [{k: v.cuda() for k, v in _batch(4, 16, s).items()} for s in range(3)]
    for method in ("mse", "percentile"):  # histogram statistics collected on the GPU
        calibrate(student, lambda m: [m(**b) for b in batches], CalibConfig(method=method))
        amaxes = [
            float(q.amax.max())
            for q in student.modules()
            if hasattr(q, "amax") and getattr(q, "amax", None) is not None
        ]
        assert amaxes and all(np.isfinite(a) and a > 0 for a in amaxes), method

    loss_fn = make_qat_loss(teacher, DistillSettings(), teacher_dtype=torch.float16)
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-3)
    before = [p.detach().clone() for p in student.parameters() if p.requires_grad]
    student.train()
    for batch in batches:
        labels = torch.randint(0, 2, (batch["input_ids"].shape[0],), device="cuda")
        loss = loss_fn(student, {**batch, "labels": labels})
        assert torch.isfinite(loss), float(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = [p.detach() for p in student.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
