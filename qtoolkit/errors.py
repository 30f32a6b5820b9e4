"""The one exception type the CLI turns into a one-line message."""

__all__ = ["QtoolError", "QtoolWarning"]


class QtoolError(Exception):
    """A problem with the user's input or environment, described in one line.

    Library code raises this for anything a user can fix (a wrong path, a bad recipe key, an empty
    dataset). The CLI prints ``error: <message>`` and exits non-zero, without a traceback.
    """


class QtoolWarning(UserWarning):
    """Something the user should know that does not stop the run (e.g. a checkpoint imported
    with some quantizers left uncalibrated)."""
