#!/bin/sh
# Replace the CPU onnxruntime with the onnxruntime-gpu build that matches this machine's CUDA.
# Used by the Dockerfile; works in any environment that has CUDA (reads $CUDA_VERSION, set by
# NVIDIA's images, else nvcc). DRY_RUN=1 only prints the requirement it would install.
#
#   CUDA 12 -> onnxruntime-gpu>=1.20,<1.27  (the `gpu` extra: CUDA 12 builds, TensorRT EP on 10)
#   CUDA 13 -> onnxruntime-gpu>=1.27        (CUDA 13 builds, TensorRT EP on TensorRT 11; with
#                                            TensorRT 10 only the CUDA EP loads)
# Both packages install the same `onnxruntime` module, so the CPU one is uninstalled first.
set -eu
cuda="${CUDA_VERSION:-}"
if [ -z "$cuda" ] && command -v nvcc >/dev/null 2>&1; then
  cuda="$(nvcc --version | sed -n 's/.*release \([0-9][0-9]*\.[0-9]*\).*/\1/p')"
fi
case "${cuda%%.*}" in
  12) spec="onnxruntime-gpu>=1.20,<1.27" ;;
  13) spec="onnxruntime-gpu>=1.27" ;;
  *) echo "install_ort_gpu: unknown CUDA version '${cuda}'; set CUDA_VERSION=12.x or 13.x" >&2
     exit 1 ;;
esac
if [ "${DRY_RUN:-0}" = 1 ]; then
  echo "$spec"
  exit 0
fi
constraint=""
[ -f /etc/pip/constraint.txt ] && constraint="--constraint /etc/pip/constraint.txt"
python -m pip uninstall -y onnxruntime
# shellcheck disable=SC2086  # $constraint is empty or two words on purpose
python -m pip install --no-cache-dir $constraint "$spec"
python -c "import onnxruntime as ort; print('onnxruntime', ort.__version__, ort.get_available_providers())"
