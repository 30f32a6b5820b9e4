#!/usr/bin/env bash
# Every GPU check in one command (<= 8 minutes): versions, tests/gpu, and the BERT-base INT8 vs
# FP16 TensorRT latency at batch 128 x seq 128. Writes a JSON summary (default
# gpu_check/summary.json; GPU_CHECK_OUT=DIR to change). Without an NVIDIA GPU it prints one line
# and exits 0. In the Docker image:
#   docker run --gpus all --rm -v "$PWD":/work --entrypoint /opt/nvidia/nvidia_entrypoint.sh \
#       qtoolkit bash scripts/gpu_check.sh
# GPU_CHECK_SKIP_LATENCY=1 skips the BERT-base timing (the longest step).
set -uo pipefail
cd "$(dirname "$0")/.."
NVIDIA_SMI="${NVIDIA_SMI:-nvidia-smi}"
PY="${PYTHON:-python}"
OUT="${GPU_CHECK_OUT:-gpu_check}"

if ! command -v "$NVIDIA_SMI" >/dev/null 2>&1 || ! "$NVIDIA_SMI" -L 2>/dev/null | grep -q "^GPU "; then
  echo "gpu_check: no NVIDIA GPU here ($NVIDIA_SMI missing or lists no GPU); nothing to check"
  exit 0
fi

mkdir -p "$OUT"
start=$(date +%s)
export HF_HUB_OFFLINE=1
echo "== versions"
"$NVIDIA_SMI" --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/nvidia_smi.txt"
"$PY" - "$OUT/versions.json" <<'PYEOF'
import json, shutil, sys
v = {}
try:
    import torch
    v |= {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
          "cuda_available": torch.cuda.is_available()}
except Exception as exc:
    v["torch"] = f"error: {exc}"
try:
    import tensorrt
    v["tensorrt"] = tensorrt.__version__
except Exception as exc:
    v["tensorrt"] = f"error: {exc}"
try:
    import onnxruntime as ort
    v |= {"onnxruntime": ort.__version__, "ort_providers": ort.get_available_providers()}
except Exception as exc:
    v["onnxruntime"] = f"error: {exc}"
v["trtexec"] = shutil.which("trtexec")
for key, value in v.items():
    print(f"{key}: {value}")
json.dump(v, open(sys.argv[1], "w"), indent=2)
PYEOF

echo "== tests/gpu (timeout 300 s)"
timeout 300 "$PY" -m pytest tests/gpu -q -rs -p no:cacheprovider --junitxml="$OUT/junit.xml"
tests_rc=$?

latency_rc=skipped
if [ "${GPU_CHECK_SKIP_LATENCY:-0}" != 1 ]; then
  left=$(( 450 - ($(date +%s) - start) ))
  if [ "$left" -gt 60 ]; then
    echo "== BERT-base TensorRT INT8 vs FP16 at 128x128 (timeout ${left} s)"
    timeout "$left" "$PY" scripts/gpu_latency.py --out "$OUT/latency.json"
    latency_rc=$?
  else
    echo "== BERT-base latency skipped: ${left} s left of the 8-minute budget"
  fi
fi

"$PY" - "$OUT" "$tests_rc" "$latency_rc" "$(( $(date +%s) - start ))" <<'PYEOF'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
out, tests_rc, latency_rc, seconds = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
checks = {}
if (out / "junit.xml").is_file():
    for case in ET.parse(out / "junit.xml").getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        status = "passed"
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                status = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                reason = (node.get("message") or "").splitlines()[:1]
                status += f": {reason[0]}" if reason else ""
        checks[name] = status
load = lambda p: json.loads(p.read_text()) if p.is_file() else None
summary = {
    "seconds": seconds,
    "versions": load(out / "versions.json"),
    "nvidia_smi": (out / "nvidia_smi.txt").read_text().strip(),
    "tests_exit_code": int(tests_rc),
    "checks": checks,
    "latency_exit_code": latency_rc,
    "latency": load(out / "latency.json"),
}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
bad = [k for k, v in checks.items() if v.startswith(("failed", "error"))]
print(f"gpu_check: {len(checks)} checks, {len(bad)} failed, {seconds} s; summary {out / 'summary.json'}")
PYEOF
[ "$tests_rc" = 0 ] && { [ "$latency_rc" = 0 ] || [ "$latency_rc" = skipped ]; }
