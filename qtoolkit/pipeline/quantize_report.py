"""What `qtool quantize` reports: the candidates and the choice, fp32 against INT8 on the
runtime, what stays in float; as a terminal summary, report.md, report.json and report.png."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtoolkit.fsutil import write_json

__all__ = ["QuantizeOutcome"]

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
REPORT_PNG = "report.png"


def _pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def _interval(d: dict[str, Any] | None, points: bool = False) -> str:
    if not d:
        return "-"
    if points:
        v, lo, hi = (100 * d[k] for k in ("value", "low", "high"))
        return f"{v:+.2f} [{lo:+.2f}, {hi:+.2f}]"
    return f"{_pct(d['value'])} [{_pct(d['low'])}, {_pct(d['high'])}]"


def _speedup(d: dict[str, Any] | None) -> str:
    return "-" if not d else f"{d['value']:.2f}x [{d['low']:.2f}, {d['high']:.2f}]"


@dataclass
class QuantizeOutcome:
    output_dir: Path
    recipe: Any
    preset: Any
    split: Any
    candidates: list[dict[str, Any]]
    chosen: dict[str, Any]
    final: dict[str, Any]
    census_int8: dict[str, int]
    census: dict[str, int]
    fallback: dict[str, Any] | None
    export: dict[str, Any]
    check: dict[str, Any]
    search_seconds: float
    fp32_dev: dict[str, float] | None = None
    tensorrt: dict[str, Any] | None = None
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)

    # --- what it holds -------------------------------------------------------------------

    @property
    def runtime(self) -> str:
        return self.recipe.quantize.runtime

    def float_parts(self) -> list[str]:
        """What does not run in INT8, in words."""
        quant = self.recipe.quant
        parts = ["LayerNorm, softmax, GELU and the embeddings (every runtime keeps them float)"]
        if not quant.residual_add:
            parts.append("the residual adds (preset: quant.residual_add false)")
        if not quant.attention_matmul:
            parts.append("the attention matmuls Q.K^T and probs.V")
        if self.fallback and self.fallback["float_units"]:
            units = self.fallback["float_units"]
            parts.append(f"{len(units)} GEMMs put back in float by --budget: {', '.join(units)}")
        if quant.skip:
            parts.append(f"modules skipped by quant.skip: {', '.join(quant.skip)}")
        return parts

    def selection_rule(self) -> str:
        score = self.recipe.quantize.score
        if self.fp32_dev is not None:
            return (
                f"best task metric on {self.recipe.data.eval_file}; ties broken by {score} on "
                "the held-out calibration slice"
            )
        return (
            f"lowest {score} divergence from fp32 on {self.split.num_holdout} held-out "
            f"calibration sentences (the other {self.split.num_range} set the ranges)"
        )

    def to_json(self) -> dict[str, Any]:
        from qtoolkit.bench.machine import machine_info

        return {
            "format": 1,
            "runtime": self.runtime,
            "preset": {"summary": self.preset.summary, "recipe": dict(self.preset.recipe)},
            "model": str(self.recipe.model.path),
            "calib_file": str(self.recipe.data.calib_file),
            "num_range": self.split.num_range,
            "num_holdout": self.split.num_holdout,
            "selection": self.selection_rule(),
            "candidates": self.candidates,
            "chosen": self.chosen,
            "final_heldout": self.final,
            "fp32_eval": self.fp32_dev,
            "gemms": self.census,
            "gemms_before_fallback": self.census_int8,
            "fallback": self.fallback,
            "float": self.float_parts(),
            "export": {k: v for k, v in self.export.items() if k != "summary"},
            "check": self.check,
            "tensorrt": self.tensorrt,
            "search_seconds": round(self.search_seconds, 1),
            "seconds": round(self.seconds, 1),
            "machine": machine_info(self.recipe.quantize.threads),
            "recipe": self.recipe.model_dump(mode="json"),
        }

    def manifest_fields(self) -> dict[str, Any]:
        return {
            "preset": self.runtime,
            "chosen": self.chosen.get("label"),
            "agreement": self.check.get("fidelity", {}).get("agreement"),
            "report": REPORT_MD,
        }

    # --- terminal ------------------------------------------------------------------------

    def summary(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        cands = Table(title=f"candidates ({self.selection_rule()})", title_justify="left")
        for col in ("", "candidate", "held-out KL", "rel. error", "held-out agreement"):
            cands.add_column(col, justify="left" if col in ("", "candidate") else "right")
        if self.fp32_dev is not None:
            cands.add_column("eval metric", justify="right")
        for row in self.candidates:
            mark = "*" if row["label"] == self.chosen["label"] else ""
            cells = [
                mark,
                Text(row["label"]),
                f"{row['kl']:.5f}",
                f"{row['relative']:.5f}",
                _pct(row["agreement"]),
            ]
            if self.fp32_dev is not None:
                cells.append(_pct(row.get("dev_metric")))
            cands.add_row(*cells)
        check = self.check
        fid = check["fidelity"]
        lines: list[Any] = [cands]
        lines.append(
            Text(
                f"chosen: {self.chosen['label']}; {self.census['int8']} of "
                f"{self.census['gemms']} GEMMs in INT8"
            )
        )
        lines.append(
            Text(
                f"on {check['runtime']} ({fid['on']}, {fid['examples']} examples): agreement "
                f"with fp32 {_interval(fid['agreement'])}"
                + (
                    f"; accuracy INT8 - fp32 {_interval(fid['accuracy_difference'], True)} points"
                    if fid.get("accuracy_difference")
                    else ""
                )
            )
        )
        if check.get("latency"):
            lines.append(self._latency_table())
        if self.tensorrt is not None and not self.tensorrt.get("built"):
            lines.append(
                Text(
                    f"TensorRT: engine not built ({self.tensorrt['why']}); "
                    f"{self.output_dir / self.tensorrt['trtexec_script']} builds it"
                )
            )
        elif self.tensorrt is not None:
            lines.append(Text(self.tensorrt["verdict"]))
        lines.append(
            Text(
                f"wrote {self.output_dir} in {self.seconds:.0f}s: {self.export['target']} layout "
                f"model.onnx ({self.export['size_mib']} MiB, fp32 {self.export['fp32_size_mib']} "
                f"MiB), checkpoint/, {REPORT_MD}"
            )
        )
        return Group(*lines)

    def _latency_table(self) -> Any:
        from rich.table import Table

        rows = self.check["latency"]
        names = [k[:-3] for k in rows[0] if k.endswith("_ms")]
        table = Table(title=f"latency on {self.check['runtime']} (median ms)", title_justify="left")
        table.add_column("shape")
        for name in names:
            table.add_column(f"{name} ({rows[0]['precisions'][name]})", justify="right")
        speedups = [k for k in rows[0] if k.startswith("speedup_vs_")]
        for key in speedups:
            table.add_column(f"INT8 vs {key.removeprefix('speedup_vs_')}", justify="right")
        for row in rows:
            table.add_row(
                f"{row['batch']}x{row['seq']}",
                *(f"{row[n + '_ms']:.2f}" for n in names),
                *(_speedup(row[k]) for k in speedups),
            )
        return table

    # --- files ---------------------------------------------------------------------------

    def markdown(self) -> str:
        fid = self.check["fidelity"]
        out = [
            f"# qtool quantize --runtime {self.runtime}",
            "",
            f"Model `{self.recipe.model.path}`, calibration text `{self.recipe.data.calib_file}` "
            f"({self.split.num_range} sentences set the ranges, {self.split.num_holdout} held "
            "out to score the candidates).",
            "",
            f"Preset: {self.preset.summary}.",
            "",
            "## Choice",
            "",
            f"Selection: {self.selection_rule()}. Chosen: **{self.chosen['label']}**.",
            "",
            "| | candidate | held-out KL | relative error | held-out agreement |"
            + (" eval metric |" if self.fp32_dev is not None else ""),
            "|---|---|---|---|---|" + ("---|" if self.fp32_dev is not None else ""),
        ]
        for row in self.candidates:
            mark = "**chosen**" if row["label"] == self.chosen["label"] else ""
            line = (
                f"| {mark} | {row['label']} | {row['kl']:.5f} | {row['relative']:.5f} | "
                f"{_pct(row['agreement'])} |"
            )
            if self.fp32_dev is not None:
                line += f" {_pct(row.get('dev_metric'))} |"
            out.append(line)
        if self.fallback is not None:
            fb = self.fallback
            out += [
                "",
                f"Float fallback (--budget {fb['budget_points']} points of {fb['metric']}): "
                f"target {_pct(fb['target'])}, start {_pct(fb['start'])}, "
                f"{'met' if fb['met'] else 'not met'} with {len(fb['float_units'])} GEMMs in "
                "float.",
            ]
        out += [
            "",
            f"## fp32 against INT8 on {self.check['runtime']}",
            "",
            f"On {fid['on']} ({fid['examples']} examples): agreement with fp32 "
            f"{_interval(fid['agreement'])} (95% bootstrap interval).",
        ]
        if fid.get("accuracy_difference"):
            m8, m32 = fid["metrics_int8"], fid["metrics_fp32"]
            metric = next(iter(m32))
            out.append(
                f"{metric}: fp32 {_pct(m32[metric])}, INT8 {_pct(m8[metric])}, difference "
                f"{_interval(fid['accuracy_difference'], True)} points."
            )
        if self.check.get("latency"):
            rows = self.check["latency"]
            names = [k[:-3] for k in rows[0] if k.endswith("_ms")]
            speedups = [k for k in rows[0] if k.startswith("speedup_vs_")]
            out += [
                "",
                "| shape | "
                + " | ".join(f"{n} ms ({rows[0]['precisions'][n]})" for n in names)
                + " | "
                + " | ".join(f"INT8 vs {k.removeprefix('speedup_vs_')}" for k in speedups)
                + " |",
                "|---|" + "---|" * (len(names) + len(speedups)),
            ]
            for row in rows:
                out.append(
                    f"| {row['batch']}x{row['seq']} | "
                    + " | ".join(f"{row[n + '_ms']:.2f}" for n in names)
                    + " | "
                    + " | ".join(_speedup(row[k]) for k in speedups)
                    + " |"
                )
        out += [
            "",
            f"Size: model.onnx {self.export['size_mib']} MiB, fp32 "
            f"{self.export['fp32_size_mib']} MiB. Export validated against PyTorch: "
            f"{self.export['validation']}.",
            "",
            "## What stays in float",
            "",
            *(f"- {p}" for p in self.float_parts()),
            f"- GEMMs in INT8: {self.census['int8']} of {self.census['gemms']}.",
        ]
        if self.tensorrt is not None:
            out += ["", "## TensorRT", ""]
            if self.tensorrt.get("built"):
                out.append(self.tensorrt["markdown"])
            else:
                out.append(
                    f"Engine not built: {self.tensorrt['why']}. `{self.tensorrt['trtexec_script']}`"
                    " holds the trtexec commands (TensorRT 10 and 11) to build it on the GPU host."
                )
        for note in self.check.get("notices", []) + self.notices:
            out.append(f"\nNote: {note}")
        out += ["", f"Took {self.seconds:.0f}s ({self.search_seconds:.0f}s choosing)."]
        return "\n".join(out) + "\n"

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        labels = [r["label"] for r in self.candidates]
        kls = [max(r["kl"], 1e-9) for r in self.candidates]
        colors = ["tab:green" if r == self.chosen["label"] else "tab:gray" for r in labels]
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.5))
        ax.barh(range(len(labels)), kls, color=colors)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(
            f"KL from fp32 on {self.split.num_holdout} held-out sentences (lower is better)"
        )
        fid = self.check["fidelity"]
        agree = fid["agreement"]
        ax.set_title(
            f"qtool quantize --runtime {self.runtime}: chosen in green; agreement with fp32 on "
            f"{self.check['runtime']} {_pct(agree['value'])} [{_pct(agree['low'])}, "
            f"{_pct(agree['high'])}]",
            fontsize=9,
        )
        ax.invert_yaxis()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def write(self, folder: Path) -> None:
        write_json(folder / REPORT_JSON, self.to_json())
        (folder / REPORT_MD).write_text(self.markdown(), encoding="utf-8")
        self.plot(folder / REPORT_PNG)
