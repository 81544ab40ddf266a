"""Verdicts of a pytest run, one JSON line each, so the run's report can count what was covered.

The property suite (`act_equiv.suite`) records what it judges; the gate itself records nothing. Each process
(every pytest-xdist worker too) appends to its own file in the directory the plugin sets; the controlling process
aggregates them into a report at the end of the session.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the plugin opens the sink when it activates, which costs no torch import
    from act_equiv.oracle.verdict import CaseVerdict

_sink: Path | None = None


def open_sink(directory: Path, name: str) -> None:
    global _sink
    directory.mkdir(parents=True, exist_ok=True)
    _sink = directory / f"verdicts-{name}.jsonl"


def record(verdict: CaseVerdict) -> CaseVerdict:
    """Append the verdict to this process's file (a no-op unless the pytest plugin activated in this process)."""
    if _sink is not None:
        with _sink.open("a") as handle:
            handle.write(json.dumps(verdict.to_dict(), default=str) + "\n")
    return verdict


def collect(paths: list[Path]) -> list[dict]:
    return [json.loads(line) for path in paths for line in path.open()]
