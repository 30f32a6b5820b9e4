"""qtoolkit: INT8 quantization, QAT and TensorRT deployment for BERT-family encoders.

Importing the package is cheap: torch, transformers and pytorch-quantization are imported by the
submodules that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
