"""Reports render verdicts: a long failing pytest session still gives a readable summary.md."""

from __future__ import annotations

from gate_targets import Raises

from act_equiv import report
from act_equiv.gate import Gate
from act_equiv.suite import MUST_KEEP
from act_equiv.targets import Target


def test_summary_renders_at_most_its_limit_of_failures_and_says_so() -> None:
    gate = Gate(backend=None, explain=False)
    gate.runner.target = Target("raises", Raises)
    failing = gate.verdict(MUST_KEEP[0]).to_dict()
    built = report.build([failing] * (report.MARKDOWN_FAILURES + 5), gate.environment(), {"kind": "pytest"})
    text = report.markdown(built)
    assert built["result"]["failures"] == report.MARKDOWN_FAILURES + 5
    assert text.count("## Failure ") == report.MARKDOWN_FAILURES
    assert f"{report.MARKDOWN_FAILURES + 5} failing verdicts" in text and "all are in report.json" in text
