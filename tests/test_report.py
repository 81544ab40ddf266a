"""Reports render verdicts: a long failing pytest session still gives a readable summary.md; summary.md, JUnit and
the pair table print the verdict's own rendered text, never text of their own."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import helpers
import pytest
from gate_targets import Raises

from act_equiv import report
from act_equiv.case import MUST_KEEP
from act_equiv.forms import FORMS
from act_equiv.gate import Gate
from act_equiv.oracle.verdict import FINDING_KINDS
from act_equiv.targets import Target

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def raising() -> Iterator[tuple[Gate, dict]]:
    """A gate whose target raises, and the verdict dict of one case (class `raised` at both levels)."""
    with Gate(target=Target("raises", Raises), backend=None, explain=False) as gate:
        yield gate, gate.verdict(MUST_KEEP[0]).to_dict()


def test_summary_renders_at_most_its_limit_of_failures_and_says_so(raising: tuple[Gate, dict]) -> None:
    gate, failing = raising
    built = report.build([failing] * (report.MARKDOWN_FAILURES + 5), gate.environment(), {"kind": "pytest"})
    text = report.markdown(built)
    assert built["result"]["failures"] == report.MARKDOWN_FAILURES + 5
    assert text.count("## Failure ") == report.MARKDOWN_FAILURES
    assert f"{report.MARKDOWN_FAILURES + 5} failing verdicts" in text and "all are in report.json" in text


def test_markdown_and_junit_print_the_verdicts_own_failure_lines(raising: tuple[Gate, dict], tmp_path: Path) -> None:
    gate, failing = raising
    lines = failing["failures"]
    assert [line.split("]")[0] for line in lines] == ["[model: raised", "[policy: raised"], lines
    assert lines[0].startswith("[model: raised] the target raised RuntimeError at forward")
    built = report.build([failing], gate.environment(), {"kind": "check"}, [{**failing, "replay": "act-equiv replay"}])
    assert "```\n" + "\n".join(lines) + "\n```" in report.markdown(built)
    report.junit(built, tmp_path / "junit.xml")
    (failure,) = ET.parse(tmp_path / "junit.xml").getroot().iter("failure")
    assert failure.text == "\n".join(lines) and failure.get("type") == "model: raised, policy: raised"
    assert failure.get("message") == "act-equiv replay"


def test_the_pair_table_shows_each_checks_own_tolerance_text() -> None:
    verdict = helpers.verdict("concat", MUST_KEEP[0], backend=None, compiled=False).to_dict()
    assert verdict["passed"] and verdict["failures"] == []
    assert {check["tolerance"]["describe"] for check in verdict["checks"]} == {"bitwise"}
    assert all(entry["tolerance"] == ["bitwise"] for entry in report.pair_errors([verdict]).values())


def test_finding_kinds_are_the_oracles_and_documented() -> None:
    """`FindingKind` lists exactly the kinds act_equiv/oracle/judge.py emits (by name, or a form's from the forms
    table); reports/README.md names each."""
    emitted = set(re.findall(r'Finding\(\s*"(\w+)"', (ROOT / "act_equiv/oracle/judge.py").read_text()))
    emitted |= {form.raised for form in FORMS.values()}
    assert emitted == set(FINDING_KINDS)
    readme = (ROOT / "reports/README.md").read_text()
    assert all(kind in readme for kind in FINDING_KINDS)


def test_a_grouped_warning_shows_its_worst_cases_numbers_and_count() -> None:
    """One cause is listed once however many cases showed it, with the worst case's real numbers, not a template."""

    def verdict(diff: str, describe: str) -> dict:
        evidence = (f"float32 outputs differ (max |diff| {diff} on actions); run in float64 both sides agree to "
                    "float64 rounding (max |diff| 1e-16, rtol=1e-07, atol=1e-07)")
        return {"describe": describe, "passed": True, "classes": {"model": {
            "name": "rounding", "label": "", "warning": True, "accepted": True, "evidence": evidence}}}

    [line] = report.classes([verdict("2e-07", "small"), verdict("9.5e-07", "large")])["model"]["warnings"]
    assert "max |diff| 9.5e-07 on actions" in line and "#" not in line, line
    assert line.endswith("(2 case(s); worst: large)"), line


def test_a_requested_form_that_compared_no_case_fails_the_run() -> None:
    """An eager-only verdict cannot vouch for the compiled form the run asked for: "not checked", never PASS."""
    verdict = helpers.verdict("concat", MUST_KEEP[0], backend=None, compiled=False).to_dict()
    built = report.build([verdict], {}, {"kind": "check", "forms_requested": ["compiled"]})
    assert not built["result"]["passed"] and built["result"]["forms_not_checked"] == ["compiled"]
    lines = report.console(built)
    assert lines[0].startswith("FAIL:") and any(line.startswith("not checked: compiled") for line in lines), lines
    eager_only = report.build([verdict], {}, {"kind": "check", "forms_requested": []})
    assert eager_only["result"]["passed"] and report.console(eager_only)[0].startswith("PASS")
