"""The end-of-job report: one row per item, written as JSON and shown as a table on stderr."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from unsmear.files import write_bytes_atomic

# The JSON report's file name in a job's output folder (unless --report says otherwise).
REPORT_NAME = "unsmear-report.json"
# Statuses in the report (the ledger only knows running/done/failed).
DONE = "done"            # processed by this run
SKIPPED = "skipped"      # done by an earlier run with the same settings
FAILED = "failed"
# Errors are cut to this width in the table (the JSON keeps them whole).
TABLE_ERROR_WIDTH = 60


@dataclass(frozen=True)
class Row:
    """One item's line in the report."""

    item: str                    # input path relative to the job's input folder
    output: str                  # output path (file or folder)
    status: str                  # done, skipped or failed
    frames: int = 0              # frames (deblur) or pairs (build-pairs) written
    seconds: float = 0.0         # wall time for the item
    error: str | None = None     # why it failed

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Report:
    """Every item of a job, and whether all succeeded."""

    command: str                 # deblur or build-pairs
    rows: tuple[Row, ...]
    seconds: float               # wall time of the whole run

    @property
    def ok(self) -> bool:
        return all(row.status != FAILED for row in self.rows)

    def count(self, status: str) -> int:
        return sum(row.status == status for row in self.rows)

    def to_json(self) -> dict:
        return {
            "command": self.command,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "done": self.count(DONE),
            "skipped": self.count(SKIPPED),
            "failed": self.count(FAILED),
            "items": [{**asdict(row), "seconds": round(row.seconds, 3), "fps": round(row.fps, 3)}
                      for row in self.rows],
        }

    def write(self, path: Path) -> None:
        """Write the JSON report atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, (json.dumps(self.to_json(), indent=2) + "\n").encode("utf-8"))

    def table(self, unit: str = "frames") -> str:
        """A plain-text table, one row per item, then a summary line."""
        header = ("item", "status", unit, "seconds", "fps", "error")
        lines = [header] + [
            (row.item, row.status, str(row.frames), f"{row.seconds:.1f}", f"{row.fps:.2f}",
             _cut(row.error or "")) for row in self.rows
        ]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
        text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) + "  " + line[-1]
                for line in lines]
        text.append(f"{self.count(DONE)} done, {self.count(SKIPPED)} skipped (done before), "
                    f"{self.count(FAILED)} failed, in {self.seconds:.1f} s")
        return "\n".join(line.rstrip() for line in text)


def _cut(text: str) -> str:
    return text if len(text) <= TABLE_ERROR_WIDTH else text[:TABLE_ERROR_WIDTH - 1] + "…"


def rows_in_order(rows: Sequence[Row]) -> tuple[Row, ...]:
    return tuple(sorted(rows, key=lambda row: row.item))
