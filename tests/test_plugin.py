"""The pytest plugin is loaded into every session of an environment with act-equiv installed (entry point
`pytest11`): it must leave a foreign project's run alone, and activate only when the session asks for act_equiv.

Each run is a fresh subprocess (`runpytest_subprocess`), so this session's own activation cannot leak into it.
"""

from __future__ import annotations

import json

import pytest

# A foreign project's tests: Hypothesis as it ships, torch never imported, the plugin loaded all the same.
FOREIGN = """
import sys

from hypothesis import HealthCheck, given, settings, strategies as st


def test_plugin_loaded(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("act_equiv")


def test_hypothesis_profiles_untouched():
    assert settings.get_current_profile_name() in ("default", "ci")  # Hypothesis's own choice, not act_equiv's
    ci = settings.get_profile("ci")
    assert ci.derandomize is True
    assert ci.max_examples == settings.get_profile("default").max_examples
    assert list(ci.suppress_health_check) == [HealthCheck.too_slow]


@given(st.integers())
def test_no_torch(n):
    assert "torch" not in sys.modules
"""

# A foreign project that imports the property suite: that alone asks for act_equiv.
IMPORTS_SUITE = """
from hypothesis import settings

from act_equiv.gate import Gate
from act_equiv.suite import MUST_KEEP


def test_one_case(act_options):
    assert settings.get_current_profile_name() == "dev"
    Gate(**{**act_options, "backend": None}, explain=False).assert_holds(MUST_KEEP[0])
"""


@pytest.fixture(autouse=True)
def local_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside CI act_equiv would load its "dev" profile, which no foreign run must see."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("ACT_EQUIV_PROFILE", raising=False)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_inert_in_a_foreign_run(pytester: pytest.Pytester, workers: list[str]) -> None:
    pytester.makepyfile(test_foreign=FOREIGN)
    result = pytester.runpytest_subprocess(*workers)
    result.assert_outcomes(passed=3)
    assert not (pytester.path / "reports").exists()


def test_act_option_activates(pytester: pytest.Pytester) -> None:
    """`--act-target` adds the suite to the run; the session's report is written under the rootdir."""
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest_subprocess("--act-target", "concat", "--act-backend=none",
                                           "-k", "test_forms_agree_must_keep")
    result.assert_outcomes(passed=2)
    report = json.loads((pytester.path / "reports/pytest/report.json").read_text())
    assert report["result"] == {"passed": True, "cases": 2, "skipped": 0, "failures": 0}


def test_importing_the_suite_activates(pytester: pytest.Pytester) -> None:
    """No `--act-*` option: the xdist controller never activates, the worker that imports the suite does, and the
    controller still aggregates that worker's verdicts into the report."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_uses_suite=IMPORTS_SUITE)
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "reports/pytest/report.json").read_text())
    assert report["result"]["cases"] == 1
