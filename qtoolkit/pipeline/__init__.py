"""Stages as single functions taking a Recipe: what the CLI and `qtool run` call."""

__all__: list[str] = []
