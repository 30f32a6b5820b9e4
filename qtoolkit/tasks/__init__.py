"""Tasks: reading data, tokenizing, training targets and metrics, one class per task."""

from __future__ import annotations

from qtoolkit.errors import QtoolError
from qtoolkit.tasks.base import TaskData, split_rows

__all__ = ["TaskData", "get_task", "split_rows"]


def get_task(name: str, **options):
    from qtoolkit.tasks.classification import (
        NextSentencePredictionTask,
        SequenceClassificationTask,
    )
    from qtoolkit.tasks.masked_lm import MaskedLMTask
    from qtoolkit.tasks.multiple_choice import MultipleChoiceTask
    from qtoolkit.tasks.question_answering import QuestionAnsweringTask
    from qtoolkit.tasks.token_classification import TokenClassificationTask

    tasks = {
        "sequence-classification": SequenceClassificationTask,
        "question-answering": QuestionAnsweringTask,
        "token-classification": TokenClassificationTask,
        "multiple-choice": MultipleChoiceTask,
        "masked-lm": MaskedLMTask,
        "next-sentence-prediction": NextSentencePredictionTask,
    }
    if name not in tasks:
        raise QtoolError(
            f"task '{name}' cannot be trained or evaluated (supported: {', '.join(tasks)})"
        )
    return tasks[name](**options)
