# qtool with CUDA, a CUDA build of PyTorch and TensorRT: the place to build and time engines.
#
#   docker build -t qtoolkit .
#   docker run --gpus all --rm -v "$PWD":/work qtoolkit \
#       build-engine runs/minilm/export/model.onnx -o runs/minilm/engine/model.engine
#   docker run --gpus all --rm -v "$PWD":/work qtoolkit calibrate -r recipes/minilm-calibrate.yaml
#
# Add --user "$(id -u):$(id -g)" to write outputs as yourself instead of root.
#
# Base: NVIDIA's NGC PyTorch image, which ships CUDA, PyTorch and TensorRT's Python bindings
# together (NGC's tensorrt image has no PyTorch, and installing torch on top would pull GB of
# CUDA wheels). The host needs an NVIDIA driver new enough for the image's CUDA (see NGC's
# release notes for the tag) and the NVIDIA Container Toolkit for --gpus.
FROM nvcr.io/nvidia/pytorch:26.05-py3

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1

WORKDIR /opt/qtoolkit
COPY pyproject.toml README.md ./
COPY qtoolkit ./qtoolkit

# /etc/pip/constraint.txt (NGC's pins for everything in the image) keeps pip from replacing the
# image's torch and TensorRT. The `trt` extra is left out on purpose: TensorRT is already here,
# and the extra would pull a second copy from PyPI.
RUN python -m pip install --no-cache-dir --constraint /etc/pip/constraint.txt . \
    && python -c "import qtoolkit.cli, qtoolkit.engine"

WORKDIR /work
# qtool replaces NVIDIA's entrypoint script, whose banner would mix into qtool's output.
ENTRYPOINT ["qtool"]
CMD ["--help"]
