"""qtoolkit: INT8 quantization, QAT and TensorRT deployment for BERT-family encoders.

Importing the package is cheap: torch, transformers and pytorch-quantization are imported by the
submodules that need them.
"""

from qtoolkit.version import __version__

__all__ = ["__version__", "quantize"]


def __getattr__(name: str):
    # `qtoolkit.quantize(...)`: the front door, imported on first use so `import qtoolkit`
    # stays light.
    if name == "quantize":
        from qtoolkit.pipeline.quantize import quantize

        return quantize
    raise AttributeError(f"module 'qtoolkit' has no attribute {name!r}")
