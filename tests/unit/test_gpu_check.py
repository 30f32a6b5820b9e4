"""scripts/gpu_check.sh on a machine without a GPU: exit 0, one line saying so, nothing written."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_without_a_gpu_is_one_line(tmp_path):
    env = {
        **os.environ,
        "NVIDIA_SMI": str(tmp_path / "no-nvidia-smi"),
        "GPU_CHECK_OUT": str(tmp_path / "out"),
    }
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and "no NVIDIA GPU here" in lines[0], out.stdout
    assert out.stderr == "" and not (tmp_path / "out").exists()


def test_gpu_check_with_an_nvidia_smi_listing_no_gpu(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'No devices were found'\nexit 6\n")
    fake.chmod(0o755)
    env = {**os.environ, "NVIDIA_SMI": str(fake), "GPU_CHECK_OUT": str(tmp_path / "out")}
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0 and out.stdout.count("\n") == 1
    assert "no NVIDIA GPU here" in out.stdout
