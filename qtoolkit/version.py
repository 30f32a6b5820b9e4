"""qtoolkit's version, in a module of its own: every module that records it imports this one,
so none of them needs the package root (which re-exports the front door, `quantize`).

Also the one place that knows which pip distributions provide the libraries and runtimes qtool
uses (`onnxruntime` may come as `onnxruntime-gpu`, TensorRT as `tensorrt-cu12`, ...), so that
`qtool --version`, run manifests and results files name the same versions. Nothing is imported
to find them: importing TensorRT would load its libraries.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["DISTRIBUTIONS", "__version__", "installed_distribution", "installed_versions"]

# import name -> the pip distributions that provide it, the usual one first
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "transformers": ("transformers",),
    "pytorch-quantization": ("pytorch-quantization",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "openvino": ("openvino",),
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11"),
}


def installed_distribution(name: str) -> tuple[str, str] | None:
    """(distribution, version) of the first installed distribution that provides `name`."""
    import importlib.metadata as md

    for dist in DISTRIBUTIONS.get(name, (name,)):
        try:
            return dist, md.version(dist)
        except md.PackageNotFoundError:
            continue
    return None


def installed_versions(names: tuple[str, ...] | None = None) -> dict[str, str | None]:
    """qtoolkit's version, then each library's installed version (None when it is absent)."""
    found: dict[str, str | None] = {"qtoolkit": __version__}
    for name in names or tuple(DISTRIBUTIONS):
        dist = installed_distribution(name)
        found[name] = dist[1] if dist else None
    return found
