"""Wall time of `qtool calibrate` and `qtool qat` on 1 process against 2 (torchrun, gloo).

    python scripts/bench_dist.py                     # writes docs/results/dist.json
    python scripts/bench_dist.py --model runs/minilm-rt-sentiment/finetuned --qat-steps 20

Both runs use the machine's cores alike: one process with `--threads` intra-op threads, or two
processes with `--threads / 2` each (OMP_NUM_THREADS), so the comparison is of the same CPU
split two ways. Calibration must give the same amax either way (max |Δ amax| is recorded); QAT
runs `--qat-steps` steps of the recipe's global batch from the 1-process calibration.
On a 2-core machine little speed-up is expected; the point of the distributed path is that it
is correct, and that it scales where there are more cores or GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(argv: list[str], threads: int, log: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed (exit {proc.returncode}); see {log}")
    return round(seconds, 1)


def amax_table(folder: Path) -> dict[str, float]:
    rows = json.loads((folder / "amax.json").read_text())
    return {r["name"]: r["amax"] for r in rows if r.get("amax") is not None}


def max_amax_diff(a: dict, b: dict) -> float:
    import numpy as np

    assert a.keys() == b.keys(), "different quantizers"
    return max(
        float(np.max(np.abs(np.asarray(a[k], dtype=float) - np.asarray(b[k], dtype=float))))
        for k in a
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/minilm-rt-sentiment.yaml")
    parser.add_argument("--model", default="runs/minilm-rt-sentiment/finetuned")
    parser.add_argument("--threads", type=int, default=2, help="cores to use in all")
    parser.add_argument("--calib-samples", type=int, default=256)
    parser.add_argument("--qat-steps", type=int, default=20)
    parser.add_argument("--json", type=Path, default=Path("docs/results/dist.json"))
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from qtoolkit.bench.machine import machine_info

    bindir = Path(sys.executable).parent
    qtool = str(bindir / "qtool")
    torchrun = [str(bindir / "torchrun"), "--standalone", "--nproc-per-node", "2", qtool]
    common = ["-r", args.recipe, "--set", f"model.path={args.model}"]
    calib = [*common, "--set", f"calib.num_samples={args.calib_samples}"]
    report: dict = {
        "renderer": "dist",
        "machine": machine_info(args.threads),
        "args": {k: str(v) for k, v in vars(args).items()},
        "runs": {},
    }
    work = Path(tempfile.mkdtemp(prefix="bench-dist-"))
    try:
        one, two = work / "calib-1", work / "calib-2"
        for label, launcher, threads, out in (
            ("calibrate, 1 process", [qtool], args.threads, one),
            ("calibrate, 2 processes", torchrun, max(1, args.threads // 2), two),
        ):
            argv = [*launcher, "calibrate", *calib, "-o", str(out)]
            report["runs"][label] = {"seconds": run(argv, threads, work / f"{out.name}.log")}
            print(f"{label}: {report['runs'][label]['seconds']} s", flush=True)
        report["calibration_max_amax_diff"] = max_amax_diff(amax_table(one), amax_table(two))
        for label, launcher, threads, name in (
            ("qat, 1 process", [qtool], args.threads, "qat-1"),
            ("qat, 2 processes", torchrun, max(1, args.threads // 2), "qat-2"),
        ):
            argv = [
                *launcher, "qat", *common, "--set", f"calib.output_dir={one}",
                "--set", f"output_dir={work / name}-run", "--max-steps", str(args.qat_steps),
                "-o", str(work / name),
            ]  # fmt: skip
            report["runs"][label] = {"seconds": run(argv, threads, work / f"{name}.log")}
            print(f"{label}: {report['runs'][label]['seconds']} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    runs = report["runs"]
    report["speedup"] = {
        stage: round(
            runs[f"{stage}, 1 process"]["seconds"] / runs[f"{stage}, 2 processes"]["seconds"], 3
        )
        for stage in ("calibrate", "qat")
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["speedup"]), f"max |Δ amax| {report['calibration_max_amax_diff']:.3g}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
