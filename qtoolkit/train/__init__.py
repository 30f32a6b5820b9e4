"""Training loops: fp32 fine-tuning (and, built on the same loop, QAT)."""

from qtoolkit.train.loop import TrainOutcome, train

__all__ = ["TrainOutcome", "train"]
