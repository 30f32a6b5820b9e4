"""qtoolkit's version, in a module of its own: every module that records it imports this one,
so none of them needs the package root (which re-exports the front door, `quantize`)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
