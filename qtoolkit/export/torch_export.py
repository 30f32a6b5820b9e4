"""PyTorch -> ONNX: input/output naming per task, the fake-quant export switch, the exporter call.

Two exporters, picked by `export.exporter`: the TorchScript one (`run_exporter`, `dynamo=False`,
pytorch-quantization's fake quant under `fake_quant_onnx_mode`) and the dynamo one
(`qtoolkit.export.dynamo_export`: torch.export cannot trace pytorch-quantization's data-dependent
`amax.item()`, so quantizers are swapped for constant-scale Q/DQ for the export). When torch
drops the TorchScript exporter, the default of `ExportConfig.exporter` is the one switch.
"""

from __future__ import annotations

import contextlib
import inspect
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtoolkit.errors import QtoolError

if TYPE_CHECKING:
    import onnx
    from torch import nn

__all__ = [
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "fake_quant_onnx_mode",
    "float_mode",
    "input_names_for",
    "output_names_for",
    "dynamic_axes_for",
    "export_model_proto",
    "run_exporter",
]

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# ONNX output names per task; each is also the attribute of the transformers output object.
OUTPUT_NAMES: dict[str, tuple[str, ...]] = {
    "sequence-classification": ("logits",),
    "token-classification": ("logits",),
    "masked-lm": ("logits",),
    "question-answering": ("start_logits", "end_logits"),
    "multiple-choice": ("logits",),
    "next-sentence-prediction": ("logits",),
}
# Outputs with one value per token (a sequence axis) rather than one per example.
_TOKEN_LEVEL_TASKS = ("token-classification", "masked-lm", "question-answering")


@contextlib.contextmanager
def fake_quant_onnx_mode() -> Iterator[None]:
    """Route pytorch-quantization's fake quant through torch's native ops (-> Q/DQ in ONNX).

    `TensorQuantizer.use_fb_fake_quant` is a class-wide flag; it is restored even if the export
    fails, so no other model in the process is left exporting-style.
    """
    from pytorch_quantization.nn import TensorQuantizer

    previous = TensorQuantizer.use_fb_fake_quant
    TensorQuantizer.use_fb_fake_quant = True
    try:
        yield
    finally:
        TensorQuantizer.use_fb_fake_quant = previous


@contextlib.contextmanager
def float_mode(model: nn.Module) -> Iterator[None]:
    """Temporarily disable every enabled quantizer (the model then computes the float model)."""
    from qtoolkit.quant.insert import iter_quantizers

    turned_off = [q for _, q in iter_quantizers(model) if not q._disabled]
    for quantizer in turned_off:
        quantizer.disable()
    try:
        yield
    finally:
        for quantizer in turned_off:
            quantizer.enable()


def input_names_for(model: nn.Module) -> list[str]:
    """The ONNX inputs: those of `INPUT_NAMES` that the model's forward accepts."""
    params = inspect.signature(model.forward).parameters
    names = [n for n in INPUT_NAMES if n in params]
    if "input_ids" not in names:
        raise QtoolError(f"{type(model).__name__}.forward takes no input_ids; cannot export it")
    return names


def output_names_for(task: str) -> tuple[str, ...]:
    try:
        return OUTPUT_NAMES[task]
    except KeyError:
        raise QtoolError(f"no ONNX outputs defined for task '{task}'") from None


def dynamic_axes_for(inputs: Sequence[str], outputs: Sequence[str], task: str) -> dict:
    if task == "multiple-choice":  # [batch, choices, seq] in, one score per choice out
        axes = {n: {0: "batch", 1: "choices", 2: "sequence"} for n in inputs}
        return {**axes, **{n: {0: "batch", 1: "choices"} for n in outputs}}
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in inputs}
    for name in outputs:
        axes[name] = {0: "batch", 1: "sequence"} if task in _TOKEN_LEVEL_TASKS else {0: "batch"}
    return axes


def _wrapper(model, input_names: Sequence[str], output_names: Sequence[str]):
    """A module with positional inputs and a tuple of named outputs, as the exporter wants."""
    import torch

    class OnnxWrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            out = self.model(**dict(zip(input_names, inputs, strict=True)), return_dict=True)
            return tuple(getattr(out, name) for name in output_names)

    return OnnxWrapper()


def example_inputs(batch: Mapping[str, Any], input_names: Sequence[str], rows: int = 2) -> tuple:
    """Export inputs from a tokenized batch: a couple of rows, missing token types as zeros."""
    import torch

    if "input_ids" not in batch:
        raise QtoolError("sample batches must hold 'input_ids'")
    ids = torch.as_tensor(batch["input_ids"])[:rows].long().cpu()
    args = []
    for name in input_names:
        if name in batch:
            args.append(torch.as_tensor(batch[name])[:rows].long().cpu())
        elif name == "attention_mask":
            args.append(torch.ones_like(ids))
        else:
            args.append(torch.zeros_like(ids))
    return tuple(args)


def run_exporter(
    module: nn.Module,
    args: tuple,
    path: Path,
    opset: int,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict,
) -> None:
    """The single call into torch's ONNX exporter (TorchScript-based)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        # Tracer warnings about Python-side shape checks in transformers are expected here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )


def export_model_proto(
    model: nn.Module,
    task: str,
    example_batch: Mapping[str, Any],
    opset: int,
    quantized: bool = True,
    exporter: str = "torchscript",
) -> onnx.ModelProto:
    """Export `model` (eval, CPU, fp32) and return the loaded `onnx.ModelProto`.

    With `quantized`, quantizers export as QuantizeLinear/DequantizeLinear; otherwise every
    quantizer is switched off for the export (the float baseline). `exporter` is
    "torchscript" (pytorch-quantization's fake quant, `dynamo=False`) or "dynamo"
    (constant-scale fake quant, `qtoolkit.export.dynamo_export`).
    """
    import onnx
    import torch

    input_names = input_names_for(model)
    output_names = output_names_for(task)
    args = example_inputs(example_batch, input_names)
    was_training = model.training
    model.eval()
    export = run_exporter
    if exporter == "dynamo":
        from qtoolkit.export.dynamo_export import constant_fake_quant, run_dynamo_exporter

        export = run_dynamo_exporter
        mode = constant_fake_quant(model) if quantized else float_mode(model)
    elif exporter == "torchscript":
        mode = fake_quant_onnx_mode() if quantized else float_mode(model)
    else:
        raise QtoolError(f"unknown exporter '{exporter}' (use torchscript or dynamo)")
    try:
        with tempfile.TemporaryDirectory(prefix="qtool-export-") as tmp:
            path = Path(tmp) / "model.onnx"
            with mode, torch.no_grad():
                export(
                    _wrapper(model, input_names, output_names),
                    args,
                    path,
                    opset,
                    input_names,
                    output_names,
                    dynamic_axes_for(input_names, output_names, task),
                )
            # Models over 2 GB come back with external data; load it into memory.
            proto = onnx.load(str(path), load_external_data=True)
        if exporter == "dynamo":
            from qtoolkit.export.dynamo_export import drop_saturating_clips

            drop_saturating_clips(proto)
        return proto
    finally:
        model.train(was_training)
