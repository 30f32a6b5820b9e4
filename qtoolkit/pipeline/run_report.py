"""What `qtool run` leaves behind: `<output_dir>/run.json` (recipe hash, versions, input
checksums, every stage's status and timing) and `<output_dir>/report.md` linking every output."""

from __future__ import annotations

from pathlib import Path

from qtoolkit.pipeline.run_records import RunOutcome
from qtoolkit.pipeline.stamps import STAMP, digest, now, recipe_value
from qtoolkit.recipe import Recipe

__all__ = ["MANIFEST", "REPORT", "write_manifest", "write_report"]

MANIFEST = "run.json"
REPORT = "report.md"


def _versions() -> dict[str, str | None]:
    from qtoolkit.engine import installed_tensorrt_version
    from qtoolkit.version import installed_versions

    names = ("torch", "transformers", "onnx", "onnxruntime", "pytorch-quantization")
    return {**installed_versions(names), "tensorrt": installed_tensorrt_version()}


def write_manifest(
    recipe: Recipe, outcome: RunOutcome, started: str, cache: dict[Path, str]
) -> None:
    import platform

    from qtoolkit.fsutil import write_json

    files = ("train_file", "eval_file", "calib_file", "test_file")
    inputs = {
        f"data.{k}": recipe_value(recipe, f"data.{k}", cache)
        for k in files
        if getattr(recipe.data, k) is not None
    }
    write_json(
        outcome.manifest_path,
        {
            "format": 1,
            "recipe": recipe.name,
            "recipe_sha256": digest(recipe.model_dump(mode="json")),
            "started": started,
            "finished": now(),
            "seconds": outcome.seconds,
            "versions": _versions(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "inputs": inputs,
            "stages": [r.to_dict() for r in outcome.stages],
            "report": REPORT,
            "recipe_dump": recipe.model_dump(mode="json"),
        },
    )


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _section(title: str, md_file: Path, root: Path) -> list[str]:
    """A report section embedding a stage's Markdown table (without its own heading)."""
    if not md_file.is_file():
        return []
    folder, link = _rel(md_file.parent, root), _rel(md_file, root)
    body = [ln for ln in md_file.read_text().splitlines() if not ln.startswith("# ")]
    body = [ln.replace("](", f"]({folder}/") if ln.startswith("![") else ln for ln in body]
    return ["", f"## {title}", "", f"From [{link}]({link}).", "", *body]


def _links(title: str, files: list[Path], root: Path, text: list[str]) -> list[str]:
    found = [p for p in files if p.is_file()]
    if not found and not text:
        return []
    return ["", f"## {title}", "", *text, *(f"- [{_rel(p, root)}]({_rel(p, root)})" for p in found)]


def write_report(recipe: Recipe, outcome: RunOutcome) -> None:
    from qtoolkit.artifacts import ENGINE_FILE, EXPORT_FILE
    from qtoolkit.fsutil import atomic_file

    root = recipe.output_dir
    lines = [
        f"# Run report: {recipe.name}",
        "",
        f"Finished {now()} in {outcome.seconds:.1f}s; manifest [{MANIFEST}]({MANIFEST}).",
        "",
        "| stage | status | seconds | note |",
        "|---|---|---:|---|",
    ]
    for r in outcome.stages:
        note = (r.reason or "; ".join(r.notices[:2]) or "").replace("|", "/")
        lines.append(f"| {r.name} | {r.status} | {r.seconds:.1f} | {note} |")
    lines += _section("PTQ sweep", root / "ptq_sweep" / "results.md", root)
    export_dir = recipe.stage_dir("export")
    export_outcome = next(r.outcome for r in outcome.stages if r.name == "export-onnx")
    validation = getattr(export_outcome, "validation", None)
    summary = [f"Validation against PyTorch: {validation.summary()}.", ""] if validation else []
    files = [export_dir / EXPORT_FILE, *sorted(export_dir.glob("*.json"))]
    lines += _links("Export", [f for f in files if f.name != STAMP], root, summary)
    engine = recipe.stage_dir("engine") / ENGINE_FILE
    lines += _links("TensorRT engine", [engine, engine.with_suffix(".build.json")], root, [])
    lines += _section("Benchmark", recipe.stage_dir("bench") / "results.md", root)
    not_run = [r for r in outcome.stages if r.status in ("skipped", "failed")]
    if not_run:
        lines += ["", "## Not run", ""]
        lines += [f"- {r.name} ({r.status}): {r.reason}" for r in not_run]
    with atomic_file(outcome.report_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
