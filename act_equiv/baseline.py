"""Known findings: a baseline file lists the failures a run accepts, so that a new one still fails it.

The shape of PyTorch's expected-failure tables and of dynamo's `ci_expected_accuracy` files: one entry per failure
signature (`CaseVerdict.failure_lines`: kind, level or form, side, exception type and innermost frame, or the
diverging output and the mode). A run with `--baseline FILE` reports a failure whose signature the file lists as
known and goes on searching; any other failure fails as before; an entry no case of a finished run reproduced is
stale. `--update-baseline FILE` accepts every failure and writes them all. The file is JSON, meant to be read and
edited in review:

    {"schema": "act_equiv.baseline/1",
     "findings": [{"signature": "model: raised (target KeyError at forward in modeling_act.py:forward)",
                   "cases": 70, "first": "no-vae 0cam no-state env B=2 eval", "line": "[model: raised] ..."}]}

Only `signature` is read back; the rest says what the entry stood for when it was written. Imports no torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from act_equiv.errors import UsageError

__all__ = ["SCHEMA", "Baseline", "known_findings", "write"]

SCHEMA = "act_equiv.baseline/1"


@dataclass(frozen=True)
class Baseline:
    """The signatures a baseline file accepts."""

    path: str
    signatures: frozenset[str]

    @classmethod
    def load(cls, path: str, setting: str = "baseline") -> Baseline:
        """The baseline at `path`; a usage error naming `setting` if it is missing or malformed."""
        file = Path(path)
        if not file.is_file():
            raise UsageError(f"{setting}={path!r}: no such file (write one with --update-baseline)", setting)
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError) as error:
            raise UsageError(f"{setting}={path!r} is not JSON: {error}", setting) from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise UsageError(f"{setting}={path!r} is invalid: a JSON object with \"schema\": {SCHEMA!r}", setting)
        findings = data.get("findings")
        if not isinstance(findings, list) or not all(
                isinstance(entry, dict) and isinstance(entry.get("signature"), str) for entry in findings):
            raise UsageError(f"{setting}={path!r} is invalid: \"findings\" must be a list of objects, each with a "
                             "\"signature\" string", setting)
        return cls(path, frozenset(entry["signature"] for entry in findings))

    def stale(self, verdicts: Iterable[dict[str, Any]]) -> list[str]:
        """The entries no verdict reproduced, sorted."""
        seen = {signature for verdict in verdicts for signature in verdict.get("known", {})}
        return sorted(self.signatures - seen)


def known_findings(verdicts: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per known signature (in the order first seen): how many cases showed it, the first of them, and its line."""
    found: dict[str, dict[str, Any]] = {}
    for verdict in verdicts:
        for signature, line in verdict.get("known", {}).items():
            entry = found.setdefault(signature, {"cases": 0, "first": verdict["describe"], "line": line})
            entry["cases"] += 1
    return found


def write(path: str, findings: dict[str, dict[str, Any]], run: dict[str, Any]) -> None:
    """Write every finding of a run (`known_findings` of a run that accepted them all) as a baseline."""
    entries = [{"signature": signature, **entry} for signature, entry in sorted(findings.items())]
    data = {"schema": SCHEMA, "written_by": run.get("command", ""), "findings": entries}
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(data, indent=1) + "\n")
