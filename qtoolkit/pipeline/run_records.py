"""What `qtool run` records: one `StageRecord` per stage and the `RunOutcome` of the whole run.

Both the runner (`pipeline/run.py`) and the manifest and report writer (`pipeline/run_report.py`)
read these, so they live below both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunOutcome", "StageRecord"]

# Statuses shown as plain progress; the others (skipped, failed, not-run) are warnings.
_PROGRESS = ("running", "ran", "up-to-date", "not-configured")


@dataclass
class StageRecord:
    name: str
    status: str = "pending"  # running, ran, up-to-date, skipped, not-configured, failed, not-run
    reason: str | None = None
    seconds: float = 0.0
    fingerprint: str | None = None
    outputs: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    outcome: Any = None  # what the stage function returned (not in the manifest)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "outcome"}

    @property
    def is_warning(self) -> bool:
        """A stage that did not run when it was meant to (shown as a note, not as progress)."""
        return self.status not in _PROGRESS

    def summary(self) -> Any:
        """One line of `qtool run` progress for this stage: plain text, or a styled rich Text
        (a reason naming a path is never read as markup)."""
        from rich.text import Text

        if self.status == "running":
            return Text(f"running {self.name}", style="bold")
        if self.status == "ran":
            return f"{self.name} ran in {self.seconds:.1f}s"
        if self.status == "up-to-date":
            return f"{self.name} up to date"
        if self.status == "not-configured":
            return Text(f"{self.name}: not configured ({self.reason})", style="dim")
        return f"{self.name} {self.status}: {self.reason}"


@dataclass
class RunOutcome:
    stages: list[StageRecord]
    manifest_path: Path
    report_path: Path
    seconds: float

    def summary(self) -> str:
        return f"report {self.report_path}; manifest {self.manifest_path}"
