"""Known findings: a baseline accepts the failures it lists, the search goes on past them, a new failure still
fails, and an entry nothing reproduced is stale."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from act_equiv import baseline
from act_equiv.case import Case
from act_equiv.cli import main
from act_equiv.config import ACTConfig
from act_equiv.errors import UsageError
from act_equiv.oracle.verdict import CaseVerdict, PairClass

TESTS = Path(__file__).parent
KNOWN = "gate_targets:NoStateCrash"
"""Raises KeyError on every case without a robot state (LeRobot's known bug, as a stand-in)."""
KNOWN_AND_NEW = "gate_targets:NoStateCrashCamerasReversed"
"""The same, and camera tokens reversed: a new divergence beside the known finding."""
CHECK = ("--profile", "ci", "--seed", "1", "--max-examples", "2", "--backend", "none")


def check(reports: Path, target: str, *args: str) -> tuple[int, str, dict]:
    """`act-equiv check` of `target` with `CHECK` and `args`, its report under `reports`: (exit code, what it printed,
    the report)."""
    before = set(reports.glob("*/report.json"))
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()) as out:
        patch.syspath_prepend(str(TESTS))
        code = main(["check", "--target", target, *CHECK, "--report-dir", str(reports), *args])
    (path,) = set(reports.glob("*/report.json")) - before
    return code, out.getvalue(), json.loads(path.read_text())


KNOWN_SIGNATURES = ["model: raised (target KeyError at forward in gate_targets.py:forward)",
                    "policy: raised (target KeyError at policy in gate_targets.py:forward)",
                    "trajectory: raised (target KeyError at train in gate_targets.py:forward)"]
"""What `--update-baseline` writes for the known bug (the first test checks it): each test below writes this
baseline itself, so that no test waits for another's run (a run costs 10-15 s, and pytest-xdist's workers would each
repeat a shared one)."""
GONE = "model: raised (target ValueError at forward in modeling_act.py:forward)"
"""A baseline entry no case reproduces (stale)."""


def known_baseline(directory: Path, *signatures: str) -> Path:
    """A baseline of `KNOWN_SIGNATURES` and `signatures`, written in `directory`."""
    path = directory / "known.json"
    path.write_text(json.dumps({"schema": baseline.SCHEMA, "findings": [
        {"signature": signature} for signature in [*KNOWN_SIGNATURES, *signatures]]}))
    return path


def test_update_baseline_writes_every_finding_with_a_stable_signature(tmp_path: Path) -> None:
    recorded = tmp_path / "recorded.json"
    code, out, _ = check(tmp_path / "reports", KNOWN, "--update-baseline", str(recorded))
    assert code == 0, out
    assert "baseline: 3 finding(s) written" in out
    data = json.loads(recorded.read_text())
    assert data["schema"] == baseline.SCHEMA
    assert [entry["signature"] for entry in data["findings"]] == KNOWN_SIGNATURES
    assert all(entry["cases"] > 0 and entry["first"] and entry["line"] for entry in data["findings"])


def test_a_baselined_finding_passes_the_search_goes_on_and_a_stale_entry_is_reported(tmp_path: Path) -> None:
    """The known findings and the stale entry, judged on one run."""
    code, out, report = check(tmp_path / "reports", KNOWN, "--baseline", str(known_baseline(tmp_path, GONE)))
    assert code == 0, out
    known = report["result"]["known"]
    assert set(known) == set(KNOWN_SIGNATURES)
    assert known["model: raised (target KeyError at forward in gate_targets.py:forward)"]["cases"] > 1
    assert {"covering", "eager"} <= set(report["coverage"])  # past the first known failure: every stage ran
    assert report["result"]["compared"] > 0
    assert "known: model: raised (target KeyError" in out
    assert report["classes"]["model"]["class"] == "raised (known)"
    assert report["result"]["stale"] == [GONE] and f"stale: {GONE}" in out


def test_a_new_divergence_beside_a_baselined_finding_fails(tmp_path: Path) -> None:
    code, out, report = check(tmp_path / "reports", KNOWN_AND_NEW, "--baseline", str(known_baseline(tmp_path)))
    assert code == 1, out
    (failure,) = report["failures"]
    assert failure["classes"]["model"]["name"] == "divergent"
    assert not failure["known"] and all("KeyError" not in line for line in failure["failures"])


def test_a_stale_entry_fails_under_strict(tmp_path: Path) -> None:
    code, out, report = check(tmp_path / "reports", KNOWN, "--baseline", str(known_baseline(tmp_path, GONE)),
                              "--strict")
    assert code == 1 and "(a failure: --strict)" in out
    assert report["result"]["stale"] == [GONE]


@pytest.mark.parametrize(("text", "message"), [
    (None, "no such file"),
    ("not json", "is not JSON"),
    ('{"findings": []}', '"schema": \'act_equiv.baseline/1\''),
    ('{"schema": "act_equiv.baseline/1", "findings": [{"cases": 1}]}', '"signature" string'),
])
def test_a_bad_baseline_is_a_usage_error_naming_the_option(tmp_path: Path, text: str | None, message: str,
                                                           capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "baseline.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UsageError, match="baseline="):
        baseline.Baseline.load(str(path))
    assert main(["check", "--baseline", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and f"--baseline '{path}'" in err


def test_update_baseline_and_baseline_together_are_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["check", "--baseline", "a.json", "--update-baseline", "b.json"]) == 2
    assert "--baseline 'a.json' is invalid with record_findings=True (act-equiv check --update-baseline)" \
        in capsys.readouterr().err


def test_a_signature_ignores_line_numbers_and_batch_sizes(tiny_config: Callable[..., ACTConfig]) -> None:
    simple_case = Case(tiny_config())

    def raised(line: int, call: str) -> CaseVerdict:
        traceback = ["Traceback (most recent call last):",
                     f'  File "/x/modeling_act.py", line {line}, in forward\n    batch[OBS_STATE].device']
        detail = {"target": {"call": call, "type": "KeyError", "message": "x", "traceback": traceback}}
        return CaseVerdict(simple_case, classes={"model": PairClass("model", "raised", "e", accepted=False,
                                                                    detail=detail)})

    (first,), (second,) = raised(455, "forward").failure_lines(), raised(431, "forward").failure_lines()
    assert first[0] == second[0] == "model: raised (target KeyError at forward in modeling_act.py:forward)"
    verdict = raised(455, "compiled@batch3")
    assert verdict.failure_lines()[0][0].endswith("KeyError at compiled in modeling_act.py:forward)")
    verdict.accepted = frozenset({first[0]})
    assert not verdict.passed and raised(1, "forward").failures
    accepted = raised(1, "forward")
    accepted.accepted = frozenset({first[0]})
    assert accepted.passed and not accepted.failures and list(accepted.known) == [first[0]]
