"""`qtool build-engine MODEL.onnx --runtime openvino`: the compiled CPU artifact.

The ONNX file (qtool's QDQ export, or its fp32 baseline) is converted to OpenVINO IR
(`ov.convert_model` + `ov.save_model`, weights kept in f32: fp16 compression would change what
the Q/DQ scales were calibrated for) and validated before anything is written: OpenVINO on the
IR against ONNX Runtime on the ONNX file, on the same sentences (data.calib_file, the first
export.num_samples), with the export's tolerance on max |diff| and argmax agreement.
The folder also gets the tokenizer, config.json and a manifest, so `qtool evaluate DIR` and
`qtool benchmark --target ov-int8=DIR/model.xml` can use it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from qtoolkit.errors import QtoolError

__all__ = ["OpenVinoBuild", "build_openvino"]


@dataclass
class OpenVinoBuild:
    output_dir: Path
    xml: Path
    validation: object  # export.validate.ValidationReport
    inference_precision: str
    int8_kernels: int
    openvino_version: str
    seconds: float
    notices: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """What `qtool build-engine --runtime openvino` prints."""
        return "\n".join(
            [
                f"wrote {self.xml} (OpenVINO {self.openvino_version}, CPU: {self.int8_kernels} "
                f"int8 kernels, inference precision {self.inference_precision}) in "
                f"{self.seconds:.1f}s",
                f"validated against ONNX Runtime: {self.validation.summary()}",
                *(f"note: {n}" for n in self.notices),
            ]
        )


def build_openvino(onnx_path: str | Path, out_dir: str | Path, recipe) -> OpenVinoBuild:
    """Convert `onnx_path` to OpenVINO IR in `out_dir`, validated against ONNX Runtime."""
    from qtoolkit.artifacts import OPENVINO_FILE, Kind, write_manifest, writing_dir
    from qtoolkit.data import read_data_examples, tokenize_batches
    from qtoolkit.export.validate import compare_runners, per_token_outputs
    from qtoolkit.models.registry import spec_for_config
    from qtoolkit.runtime.ov_runner import (
        OpenVinoRunner,
        check_model_file,
        import_openvino,
        openvino_error,
    )
    from qtoolkit.runtime.targets import open_target

    start = time.perf_counter()
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    if onnx_path.suffix != ".onnx" or not onnx_path.is_file():
        raise QtoolError(f"ONNX model not found: {onnx_path} (build-engine takes a .onnx file)")
    check_model_file(onnx_path)
    ov = import_openvino()
    data_file = recipe.data.calib_file
    if data_file is None:
        raise QtoolError(
            "build-engine --runtime openvino validates on real text: set data.calib_file"
        )
    threads = recipe.bench.threads
    reference = open_target(onnx_path, recipe, threads=threads, runtime="onnxruntime")
    examples = read_data_examples(data_file, recipe.data, recipe.export.num_samples)
    batches = tokenize_batches(reference.tokenizer, examples, 16, recipe.data.max_length)
    cfg = recipe.export
    atol = cfg.atol if cfg.atol is not None else spec_for_config(reference.config).onnx_atol
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:  # noqa: BLE001 - OpenVINO's frontends raise their own types
        raise QtoolError(f"OpenVINO cannot convert {onnx_path}: {openvino_error(exc)}") from None
    # The export folder is an input too: an IR inside it would be a file the export did not write.
    inputs = (onnx_path, onnx_path.parent, data_file)
    with writing_dir(out_dir, Kind.OPENVINO, inputs=inputs) as tmp:
        ov.save_model(model, str(tmp / OPENVINO_FILE), compress_to_fp16=False)
        runner = OpenVinoRunner(tmp / OPENVINO_FILE, threads, None, recipe.bench.performance_hint)
        report = compare_runners(
            reference.runner,
            runner,
            batches,
            atol,
            cfg.min_argmax_agreement,
            per_token_outputs(onnx_path),
        )
        if not report.passed:
            raise QtoolError(f"OpenVINO validation failed: {report.failure()}")
        reference.config.save_pretrained(tmp)
        reference.tokenizer.save_pretrained(tmp)
        version = ov.__version__.split("-")[0]
        write_manifest(
            tmp,
            Kind.OPENVINO,
            task=reference.task_name,
            architecture=spec_for_config(reference.config).name,
            source_onnx=str(onnx_path),
            model=OPENVINO_FILE,
            openvino_version=version,
            runs_as=runner.details(),
            validation=report.summary(),
        )
    notices = []
    if _export_target(onnx_path) == "onnxruntime":
        notices.append(
            f"{onnx_path.name} has the onnxruntime Q/DQ layout; OpenVINO runs the one-Q/DQ-per-"
            "tensor layout faster (1.3-1.7x measured, scripts/bench_openvino.py): export with "
            "--target openvino"
        )
    return OpenVinoBuild(
        notices=notices,
        output_dir=out_dir,
        xml=out_dir / OPENVINO_FILE,
        validation=report,
        inference_precision=runner.inference_precision,
        int8_kernels=runner.int8_kernels,
        openvino_version=version,
        seconds=time.perf_counter() - start,
    )


def _export_target(onnx_path: Path) -> str | None:
    """The `export.target` an ONNX file was written with (its metadata), if qtool wrote it."""
    import onnx

    from qtoolkit.export.check import TARGET_METADATA_KEY

    model = onnx.load(str(onnx_path), load_external_data=False)
    return next((p.value for p in model.metadata_props if p.key == TARGET_METADATA_KEY), None)
