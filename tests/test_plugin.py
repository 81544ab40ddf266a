"""The pytest plugin is loaded into every session of an environment with act-equiv installed (entry point
`pytest11`): it must leave a foreign project's run alone, and activate only when the session asks for act_equiv.

Each run is a fresh subprocess (`runpytest_subprocess`), so this session's own activation cannot leak into it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from act_equiv.cli import options, parser
from act_equiv.plugin import PREFIX

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
from act_equiv.case import MUST_KEEP
from act_equiv.suite import assert_holds


def test_one_case(act_options):
    assert settings.get_current_profile_name() == "dev"
    with Gate(**{**act_options, "backend": None}, explain=False) as gate:
        assert_holds(gate, MUST_KEEP[0])
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
    assert report["result"] == {"passed": True, "cases": 2, "compared": 2, "nothing_compared": None, "skipped": 0,
                                "failures": 0, "known": {}, "stale": [], "rows_not_compared": [],
                                "forms_not_checked": []}


def test_importing_the_suite_activates(pytester: pytest.Pytester) -> None:
    """No `--act-*` option: the xdist controller never activates, the worker that imports the suite does, and the
    controller still aggregates that worker's verdicts into the report."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_uses_suite=IMPORTS_SUITE)
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "reports/pytest/report.json").read_text())
    assert report["result"]["cases"] == 1


# Where the run's processes count its compiled-training structures.
CLAIMS = """
import os


def test_claims(act_options):
    assert os.path.isdir(act_options["trained_claims"])
    with open("claims.txt", "w") as out:
        out.write(act_options["trained_claims"])
"""


def test_xdist_workers_share_one_claims_directory_for_the_run(pytester: pytest.Pytester) -> None:
    """`--act-trained-structures` counts per run: the controller hands every worker the same directory to claim
    structures in (`Settings.trained_claims`), and removes it when the run ends."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_claims=CLAIMS)
    result = pytester.runpytest_subprocess("--act-backend=none", "-n", "2")
    result.assert_outcomes(passed=1)
    claims = Path((pytester.path / "claims.txt").read_text())
    assert claims.name.startswith("act-equiv-claims-") and not claims.exists()


KNOWN_FINDING = """
from act_equiv.case import Case
from act_equiv.config import ACTConfig
from act_equiv.gate import Gate


def test_known(act_options):
    with Gate(**{**act_options, "backend": None}, explain=False) as gate:
        verdict = gate.verdict(Case(ACTConfig(vision_backbone="tiny_resnet", state_dim=None, env_state_dim=2,
                                              camera_shapes=[], action_dim=2, chunk_size=2, n_action_steps=2,
                                              dim_model=8, n_heads=1, dim_feedforward=8, latent_dim=2)))
    assert verdict.passed and list(verdict.known) == [
        "model: raised (target KeyError at forward in gate_targets.py:forward)",
        "policy: raised (target KeyError at policy in gate_targets.py:forward)"]
"""


def test_act_baseline_accepts_the_findings_it_lists(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_known=KNOWN_FINDING)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    (pytester.path / "known.json").write_text(json.dumps({"schema": "act_equiv.baseline/1", "findings": [
        {"signature": "model: raised (target KeyError at forward in gate_targets.py:forward)"},
        {"signature": "policy: raised (target KeyError at policy in gate_targets.py:forward)"}]}))
    result = pytester.runpytest_subprocess("--act-target", "gate_targets:NoStateCrash", "--act-baseline",
                                           "known.json", "-k", "test_known")
    result.assert_outcomes(passed=1)
    missing = pytester.runpytest_subprocess("--act-baseline", "missing.json", "-k", "test_known")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["ERROR: act-equiv: --act-baseline 'missing.json': no such file*"])


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_bad_act_option_is_a_usage_error_naming_the_act_flag(pytester: pytest.Pytester, workers: list[str]) -> None:
    """The gate's `UsageError` (`target=...`) reaches the user as a pytest usage error with the plugin's flag."""
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest_subprocess("--act-target", "no_such_module:X", "-k", "must_keep", *workers)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: act-equiv: --act-target 'no_such_module:X': cannot import module *"])
    assert "target=" not in result.stderr.str()


def test_an_unknown_form_is_a_usage_error_naming_the_act_flag(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest_subprocess("--act-forms", "compiled,frozen", "-k", "must_keep")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: act-equiv: --act-forms 'compiled,frozen' is invalid: a comma-separated*"])


def test_a_fixture_conflicting_with_the_session_options_skips(pytester: pytest.Pytester) -> None:
    """`--act-dtype float64` is a good option; the autocast fixtures' `autocast=` cannot run with it: they skip."""
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest_subprocess("--act-target", "concat", "--act-dtype", "float64", "-rs",
                                           "-k", "test_forms_agree_autocast")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*autocast='bfloat16' needs dtype='float32'*"])


def test_the_option_table_drives_the_command_line_and_the_plugin(pytester: pytest.Pytester) -> None:
    """Every gate option of `act_equiv.cli.options` is `--name` of `act-equiv check` and `--act-name` of the plugin,
    with the table's choices and default, and both map their values to `Gate` keywords the same way."""
    check = parser().parse_args(["check"])
    config = pytester.parseconfig()
    plugin_help = " ".join(pytester.runpytest_subprocess("--help").stdout.str().split())
    check_help = " ".join(parser()._subparsers._group_actions[0].choices["check"].format_help().split())
    for option in options.GATE:
        assert getattr(check, option.name) == config.getoption(option.dest(PREFIX)) == option.default, option
        if option.choices:
            choices = "{" + ",".join(option.choices) + "}"
            assert f"{option.flag('--')} {choices}" in check_help and f"{option.flag(PREFIX)}={choices}" in plugin_help
        else:
            assert option.flag("--") in check_help and option.flag(PREFIX) in plugin_help
    from act_equiv.plugin import _options

    assert _options(config) == options.gate_keywords(vars(check))
