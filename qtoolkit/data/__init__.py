"""Reading task and calibration text files, and turning them into model batches."""

from qtoolkit.data.batches import tokenize_batches
from qtoolkit.data.text import TextExample, read_data_examples, read_text_examples

__all__ = ["TextExample", "read_data_examples", "read_text_examples", "tokenize_batches"]
