"""Write the result tables of README.md and docs/*.md from the JSON files under docs/results/.

    python scripts/update_readme.py           # rewrite every block in README.md and docs/*.md
    python scripts/update_readme.py --check   # exit 1 if a block differs from its JSON
    python scripts/update_readme.py --publish ptq_minilm=ptq:runs/x/ptq_sweep/results.json
                                              # copy a run's results JSON into docs/results/

A block is the text between `<!-- results:NAME -->` and `<!-- /results:NAME -->`, in any of
those pages; it is rendered from docs/results/NAME.json by RENDERERS[NAME] (or by the renderer
named in the JSON's "renderer" field), with its source linked relative to the page. Every
figure in a block therefore comes from a committed file that names the machine it was measured
on. To add a table: commit its JSON, add a small renderer function here and the two markers in
a page. tests/unit/test_readme_results.py re-renders and compares.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
README = ROOT / "README.md"
DOCS = ROOT / "docs"
BLOCK = re.compile(r"<!-- results:([\w.-]+) -->\n(.*?)<!-- /results:\1 -->", re.S)


def pages() -> list[Path]:
    """Every page that may hold results blocks: README.md and docs/*.md."""
    return [README, *sorted(DOCS.glob("*.md"))]


def machine_line(data: dict[str, Any], source: str, link: str | None = None) -> str:
    m = data.get("machine") or {}
    flags = ", ".join(m.get("cpu_flags") or [])
    versions = m.get("versions") or {}
    ort = versions.get("onnxruntime") or m.get("onnxruntime")
    torch = versions.get("torch") or m.get("torch")
    parts = [
        f"{m.get('cpu', 'unknown CPU')}" + (f" ({flags})" if flags else ""),
        f"{m.get('cores')} cores" if m.get("cores") else None,
        f"{m.get('threads')} threads" if m.get("threads") else None,
        f"onnxruntime {ort}" if ort else None,
        f"torch {torch}" if torch else None,
        m.get("date", "")[:10] or None,
    ]
    return f"_From [{source}]({link or source}): " + ", ".join(p for p in parts if p) + "._"


def render_ptq(data: dict[str, Any]) -> str:
    """The PTQ sweep table, exactly as `qtool ptq-sweep` writes ptq_sweep/results.md."""
    sys.path.insert(0, str(ROOT))
    from qtoolkit.pipeline.sweep import sweep_markdown

    return sweep_markdown(data["rows"], data["primary_metric"], data)


def render_bench(data: dict[str, Any]) -> str:
    """Latency per backend and shape, then accuracy with intervals (from `qtool benchmark`)."""
    sys.path.insert(0, str(ROOT))
    from qtoolkit.bench.report import _accuracy_table
    from qtoolkit.bench.stats import P99_MIN_ITERATIONS

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    lines = [
        "| backend | batch x seq | p50 ms | p90 ms | p99 ms | seq/s | speed-up (vs) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in data["rows"]:
        if "p50_ms" not in r:
            continue
        vs = f"{r['speedup']:.2f}x ({r['baseline']})" if "speedup" in r else "-"
        cells = [r["backend"], f"{r['batch']}x{r['seq']}", ms(r["p50_ms"]), ms(r["p90_ms"])]
        cells += [ms(r.get("p99_ms")), f"{r['throughput']:.1f}", vs]
        lines.append("| " + " | ".join(cells) + " |")
    s = data["settings"]
    lines += [
        "",
        f"{s['warmup']} warm-up and {s['iterations']} timed iterations per backend and shape, "
        f"interleaved; inputs: {data['inputs']}."
        + (
            f" p99 not shown: fewer than {P99_MIN_ITERATIONS} timed iterations."
            if s["iterations"] < P99_MIN_ITERATIONS
            else ""
        ),
    ]
    metric = data.get("primary_metric") or "accuracy"
    lines += _accuracy_table(data, metric)
    if data.get("accuracy_data"):
        lines += ["", f"{metric}: {data['accuracy_examples']} examples of {data['accuracy_data']}."]
    return "\n".join(lines) + "\n"


def render_demo(data: dict[str, Any]) -> str:
    """`make demo`'s closing table and its wall time."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from demo import demo_table

    return (
        demo_table(data["quantize"])
        + f"\n\n`make demo` took {data['wall_s']:.0f} s ({data['note']}).\n"
    )


def render_bench_ort(data: dict[str, Any]) -> str:
    """scripts/bench_ort.py: median ms (x the faster fp32 graph) per model and shape."""
    out = []
    for model, result in data["models"].items():
        shapes = list(result["latency"])
        out.append(f"| {model} | " + " | ".join(shapes) + " | float GEMMs | agreement with fp32 |")
        out.append("|---|" + "---:|" * len(shapes) + "---:|---|")
        for v, info in result["variants"].items():
            cells = []
            for s in shapes:
                lat = result["latency"][s][v]
                cells.append(f"{lat['median_ms']:.1f} ({lat['speedup_vs_fp32']:.2f})")
            iv = info.get("agree_fp32_interval")
            agree = (
                f"{100 * iv['value']:.1f}% [{100 * iv['low']:.1f}, {100 * iv['high']:.1f}]"
                if iv
                else f"{info['agree_fp32']:.1%}"
            )
            out.append(f"| {v} | " + " | ".join(cells) + f" | {info['float_gemms']} | {agree} |")
        base = ", ".join(f"{s}: {result['latency'][s]['baseline']}" for s in shapes)
        static = result["variants"].get("ort-static", {}).get("calibration", {})
        out += [
            "",
            f"fp32 baseline (faster graph per shape): {base}. "
            f"quantize_static calibration: {static.get('method', '?')}.",
            "",
        ]
    return "\n".join(out)


def render_run(data: dict[str, Any]) -> str:
    """`qtool run`'s run.json: every stage's status and wall time."""
    lines = ["| stage | status | seconds |", "|---|---|---:|"]
    for st in data["stages"]:
        note = f" ({st['reason']})" if st["status"] == "skipped" and st.get("reason") else ""
        lines.append(f"| {st['name']} | {st['status']}{note} | {st['seconds']:.0f} |")
    lines += ["", f"Whole run: {data['seconds']:.0f} s (recipe `{data['recipe']}`)."]
    return "\n".join(lines) + "\n"


_OV_ROWS = {
    "ort-fp32": "ONNX Runtime fp32",
    "ort-int8": "ONNX Runtime, qtool INT8",
    "ov-fp32": "OpenVINO f32 (forced)",
    "ov-default": "OpenVINO default precision ({precision})",
    "nncf-int8": "OpenVINO, NNCF INT8",
    "ov-int8": "OpenVINO, qtool INT8 (`onnxruntime` layout)",
    "ov-int8-trt": "**OpenVINO, qtool INT8 (`openvino` = `tensorrt` layout)**",
}


def render_bench_openvino(data: dict[str, Any]) -> str:
    """scripts/bench_openvino.py: median ms (x ONNX Runtime fp32) and test accuracy per model."""
    out = []
    for model, shapes in data["latency"].items():
        info = data["models"][model]
        precision = info["openvino"]["ov-default"]["inference_precision"]
        names = list(shapes)
        acc = info.get("accuracy") or {}
        head = f"| {model} | " + " | ".join(names)
        rule = "|---|" + "---:|" * len(names)
        if acc:
            head += " | test accuracy | Δ vs fp32 (points, 95% CI) | agreement with fp32 (95% CI)"
            rule += "---:|---|---|"
        out += [head + " |", rule]
        for v, label in _OV_ROWS.items():
            cells = []
            for s in names:
                ms, base = shapes[s][v]["median_ms"], shapes[s]["ort-fp32"]["median_ms"]
                cells.append(f"{ms:.1f} ({base / ms:.2f}x)")
            row = f"| {label.format(precision=precision)} | " + " | ".join(cells)
            if acc:
                a = acc[v]
                d, g = a["delta_vs_fp32"], a["agreement"]
                tie = " tie" if d["low"] <= 0 <= d["high"] else ""
                delta = (
                    ""
                    if v == "ort-fp32"
                    else (
                        f"{100 * d['value']:+.2f} [{100 * d['low']:+.2f}, "
                        f"{100 * d['high']:+.2f}]{tie}"
                    )
                )
                agree = (
                    ""
                    if v == "ort-fp32"
                    else (f"{100 * g['value']:.2f}% [{100 * g['low']:.2f}, {100 * g['high']:.2f}]")
                )
                row += f" | {a['accuracy']:.4f} | {delta} | {agree}"
            out.append(row + " |")
        ratios = data["ratios"][model]
        out.append("")
        out.append(
            "Speed-ups: "
            + "; ".join(
                f"{s}: qtool/NNCF {r['ov-int8-trt / nncf-int8']:.2f}x (`onnxruntime` layout "
                f"{r['ov-int8 / nncf-int8']:.2f}x), qtool/OpenVINO default "
                f"{r['ov-int8-trt / ov-default']:.2f}x"
                for s, r in ratios.items()
            )
            + "."
        )
        if acc:
            out.append(
                f"Accuracy on {info['num_test']} test sentences; calibration "
                f"{info['calibration_sentences']} sentences for both tools."
            )
        out.append("")
    runs = min(
        v["runs"] for sh in data["latency"].values() for r in sh.values() for v in r.values()
    )
    out.append(
        f"NNCF {data['nncf']}: `nncf.quantize(model_type=TRANSFORMER)` on the same fp32 ONNX; "
        f"qtool: `calib.method: {data['recipe']['calib']['method']}` from the recipe. Median of "
        f"{runs}+ interleaved rounds per shape."
    )
    return "\n".join(out) + "\n"


_CPU_ROWS = {
    "ort-fp32": "ORT fp32",
    "ort-fp32-fused": "ORT fp32, transformer-optimizer fused",
    "ort-int8": "ORT qtool INT8 (CPU layout)",
    "ort-int8-nores": "ORT qtool INT8 (CPU layout), residual adds in float",
    "ort-int8-fused": "ORT qtool INT8 (CPU layout), transformer-optimizer fused",
    "ort-dynamic": "ORT `quantize_dynamic`",
    "ov-f32": "OpenVINO f32 (forced)",
    "ov-default": "OpenVINO default ({precision})",
    "ov-int8": "OpenVINO qtool INT8, `onnxruntime` layout",
    "ov-int8-trt": "OpenVINO qtool INT8, `openvino` layout",
    "ov-int8-trt-nores": "OpenVINO qtool INT8, `openvino` layout, residual adds in float",
}


def render_bench_cpu(data: dict[str, Any]) -> str:
    """scripts/bench_cpu.py: median ms (x the model's ORT fp32) per model and shape."""
    latency, out = data["latency"], []
    for model, info in data["models"].items():
        shapes = [s for s in latency if f"{model}/ort-fp32" in latency[s]]
        precision = next(iter(info.get("ov_precision", {}).values()), "?")
        precision = str(precision).split("'")[1] if "'" in str(precision) else precision
        out += [f"| {model} | " + " | ".join(shapes) + " |", "|---|" + "---:|" * len(shapes)]
        for v, label in _CPU_ROWS.items():
            if not all(f"{model}/{v}" in latency[s] for s in shapes):
                continue
            cells = []
            for s in shapes:
                ms = latency[s][f"{model}/{v}"]["median_ms"]
                base = latency[s][f"{model}/ort-fp32"]["median_ms"]
                cells.append(f"{ms:.1f} ({base / ms:.2f}x)")
            out.append(f"| {label.format(precision=precision)} | " + " | ".join(cells) + " |")
        out.append("")
    intervals = data.get("ratio_intervals", {})
    head = "goal ratio (>1: the first is faster)" + (" [95% interval]" if intervals else "")
    out += [f"| {head} | " + " | ".join(data["ratios"]) + " |"]
    out.append("|---|" + "---:|" * len(data["ratios"]))
    labels = sorted({k for r in data["ratios"].values() for k in r})
    for label in labels:
        cells = []
        for shape, r in data["ratios"].items():
            if label not in r:
                cells.append("-")
                continue
            iv = intervals.get(shape, {}).get(label)
            cells.append(f"{r[label]:.2f}x" + (f" [{iv[0]:.2f}, {iv[1]:.2f}]" if iv else ""))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def render_compare_evals(data: dict[str, Any]) -> str:
    """scripts/compare_evals.py: accuracy, difference and agreement against a reference run."""

    def pct(iv: dict) -> str:
        return f"{100 * iv['value']:.2f}% [{100 * iv['low']:.2f}, {100 * iv['high']:.2f}]"

    ref = data["reference"]
    lines = [
        f"| model | accuracy | Δ vs {ref} (points, 95% CI) | agreement with {ref} (95% CI) |",
        "|---|---:|---|---|",
    ]
    for row in data["rows"]:
        d = row.get("delta_vs_reference")
        delta = ""
        if d:
            tie = " tie" if d["low"] <= 0 <= d["high"] else ""
            delta = f"{100 * d['value']:+.2f} [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]{tie}"
        agree = pct(row["agreement"]) if row.get("agreement") else ""
        lines.append(f"| {row['label']} | {row['accuracy']:.4f} | {delta} | {agree} |")
    lines += ["", f"{data['num_examples']} examples of {data['data']}. {data['note']}".rstrip()]
    return "\n".join(lines) + "\n"


def render_autoquant(data: dict[str, Any]) -> str:
    """scripts/autoquant_results.py: PTQ against SmoothQuant + bias correction + fallback."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from autoquant_results import render_autoquant as render

    return render(data)


def render_dist(data: dict[str, Any]) -> str:
    """scripts/bench_dist.py: 1 process against 2 (torchrun) on the same cores."""
    lines = ["| stage | 1 process (s) | 2 processes (s) | speed-up |", "|---|---:|---:|---:|"]
    runs = data["runs"]
    for stage in ("calibrate", "qat"):
        one, two = runs[f"{stage}, 1 process"]["seconds"], runs[f"{stage}, 2 processes"]["seconds"]
        lines.append(f"| {stage} | {one:.0f} | {two:.0f} | {data['speedup'][stage]:.2f}x |")
    a = data["args"]
    lines += [
        "",
        f"Calibration: {a['calib_samples']} sentences, max |Δ amax| between the two "
        f"{data['calibration_max_amax_diff']:.3g}; QAT: {a['qat_steps']} steps of the recipe's "
        f"global batch. 1 process with {a['threads']} threads against 2 with "
        f"{max(1, int(a['threads']) // 2)} each.",
    ]
    return "\n".join(lines) + "\n"


def render_group_error(data: dict[str, Any]) -> str:
    """scripts/group_error.py: dev agreement and KL to fp32 with each quantizer group in float."""
    lines = [
        f"| group in float (dev, {data['num_dev']} sentences) | quantizers | agreement with fp32 "
        "| KL to fp32 |",
        "|---|---:|---:|---:|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['group in float']} | {r['quantizers']} | {100 * r['agreement']:.2f}% | "
            f"{r['kl_to_fp32']:.5f} |"
        )
    alpha = data["smoothquant_alpha"]
    sq = f"SmoothQuant alpha {alpha}" if alpha else "no SmoothQuant"
    lines += ["", f"{sq}, {data['calibrator']} calibration, bias correction; {data['split']}."]
    return "\n".join(lines) + "\n"


def script_renderer(script: str) -> Callable[[dict[str, Any]], str]:
    """The `render(data)` of scripts/SCRIPT.py, the benchmark script that wrote the file."""

    def render_with(data: dict[str, Any]) -> str:
        import importlib

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        return importlib.import_module(script).render(data)

    render_with.__doc__ = f"scripts/{script}.py's own render()."
    return render_with


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "quantize": script_renderer("bench_quantize"),
    "preset_search": script_renderer("preset_search"),
    "qat_fidelity": script_renderer("qat_fidelity"),
    "qat_knobs": script_renderer("qat_knobs"),
    "qat_probe": script_renderer("qat_probe"),
    "group_error": render_group_error,
    "autoquant": render_autoquant,
    "compare_evals": render_compare_evals,
    "bench_cpu": render_bench_cpu,
    "dist": render_dist,
    "bench_openvino": render_bench_openvino,
    "run": render_run,
    "ptq": render_ptq,
    "bench": render_bench,
    "demo": render_demo,
    "bench_ort": render_bench_ort,
}


def render(name: str, results_dir: Path = RESULTS, page: Path = README) -> str:
    """Block `name` as it reads on `page` (its source link is relative to the page)."""
    path = results_dir / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"results block '{name}' has no results file {path}")
    data = json.loads(path.read_text())
    kind = data.get("renderer", name)
    if kind not in RENDERERS:
        raise SystemExit(f"{path}: no renderer '{kind}' in scripts/update_readme.py")
    source = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    link = Path(os.path.relpath(path, page.resolve().parent)).as_posix()
    return RENDERERS[kind](data).rstrip("\n") + "\n\n" + machine_line(data, source, link) + "\n"


def blocks(text: str) -> list[tuple[str, str]]:
    """(name, current body) of every results block in `text`."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


def update(text: str, results_dir: Path = RESULTS, page: Path = README) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1)
        body = render(name, results_dir, page)
        return f"<!-- results:{name} -->\n{body}<!-- /results:{name} -->"

    return BLOCK.sub(repl, text)


def publish(spec: str, results_dir: Path = RESULTS) -> Path:
    """`NAME=RENDERER:PATH`: copy a results JSON to docs/results/NAME.json, naming its renderer.
    The file must name its machine (machine_info) so the page can say where it was measured."""
    name, _, rest = spec.partition("=")
    kind, _, src = rest.partition(":")
    if kind not in RENDERERS or not src:
        raise SystemExit(f"--publish {spec}: expected NAME=RENDERER:PATH ({', '.join(RENDERERS)})")
    data = json.loads(Path(src).read_text())
    if not (data.get("machine") or {}).get("cpu"):
        raise SystemExit(f"{src} does not name its machine (no machine.cpu)")
    data = {"renderer": kind, "source": src, **data}
    results_dir.mkdir(parents=True, exist_ok=True)
    out = results_dir / f"{name}.json"
    out.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a block is stale")
    parser.add_argument(
        "--page",
        type=Path,
        action="append",
        help="only this page (repeatable); default: README.md and docs/*.md",
    )
    parser.add_argument("--publish", action="append", default=[], metavar="NAME=RENDERER:PATH")
    args = parser.parse_args()
    for spec in args.publish:
        print(f"wrote {publish(spec)}")
    stale, count = [], 0
    for page in args.page or pages():
        text = page.read_text()
        new = update(text, page=page)
        count += len(blocks(new))
        if args.check:
            pairs = zip(blocks(text), blocks(new), strict=True)
            stale += [f"{page.name}:{n}" for (n, old), (_, fresh) in pairs if old != fresh]
        elif new != text:
            page.write_text(new)
            print(f"wrote {page}")
    if stale:
        print(f"results blocks out of date: {', '.join(stale)} (run scripts/update_readme.py)")
        return 1
    print(f"{count} results blocks " + ("match docs/results/" if args.check else "written"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
