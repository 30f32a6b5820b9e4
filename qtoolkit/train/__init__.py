"""Training loops: fp32 fine-tuning and, built on the same loop, QAT (resumable state,
distillation, learned amax)."""

from qtoolkit.train.loop import Checkpointing, TrainOutcome, TrainSettings, train

__all__ = ["Checkpointing", "TrainOutcome", "TrainSettings", "train"]
