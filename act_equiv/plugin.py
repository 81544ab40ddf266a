"""pytest plugin (entry point `pytest11`): run act_equiv's property suite against any ACT.

    pytest -n auto --act-target mypkg.modeling:make_act

Options live in one group, `act-equiv`: the command line's gate options (`act_equiv.cli.options`) as `--act-*`,
and `--act-report-dir`. A bad one stops the session before any test, as a pytest usage error naming the `--act-*`
flag. The entry point loads this plugin into every pytest session of an environment that has act-equiv installed
(a LeRobot checkout's own run too), so it stays inert -- imports no torch and of the package only its option
table, touches no Hypothesis profile, writes nothing -- until the session asks for act_equiv, by any of:

- an `--act-*` option on the command line (or in `addopts`/PYTEST_ADDOPTS);
- importing `act_equiv.suite`, the property suite, which calls `activate()` before its decorators run;
- a conftest calling `activate(config)` from its `pytest_configure`, as this repo's tests/conftest.py does.

Activating registers act_equiv's Hypothesis profiles (its "ci" replaces Hypothesis's) and loads the default one,
and keeps each of several xdist workers to one intra-op thread. An active xdist controller gives its workers one
claims directory (`Settings.trained_claims`), so that `--act-trained-structures` counts per run, not per worker.

The property suite hands each verdict to `record`; the plugin attaches a test's verdicts to its report
(`pytest_runtest_makereport`), pytest-xdist carries reports from the workers to the controller, and the controller
reads them back from the terminal reporter's stats into the session's report (as Hypothesis's plugin carries its
statistics).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from act_equiv.cli import options
from act_equiv.errors import UsageError

if TYPE_CHECKING:  # recording a verdict costs no torch import
    from act_equiv.oracle.verdict import CaseVerdict

SUITE = Path(__file__).with_name("suite.py")
PREFIX = "--act-"
"""The plugin's flags: `act_equiv.cli.options`' table as `--act-<name>`."""
_ACTIVE = pytest.StashKey[bool]()
_CLAIMS = pytest.StashKey[str]()
CLAIMS = "act_equiv_trained_claims"
"""The `workerinput` key that hands xdist's workers the run's claims directory."""
VERDICTS = "act_equiv_verdicts"
"""The test report attribute that carries the test's verdicts (JSON lines), to the controller under xdist too."""
_pending: list[str] = []
"""Verdicts recorded in this process since the last test report took them."""
# The running session's config, so that `activate()` called while the suite is imported can find it.
_config: pytest.Config | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("act-equiv", "act_equiv: differential testing of ACT forms (--act-target adds its "
                                         "property suite to the run)")
    options.add_to_group(group, options.GATE, PREFIX)
    group.addoption("--act-report-dir", default="reports/pytest",
                    help="where the session's report goes (relative to the rootdir)")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Remember the config (cheap, imports nothing); activate only if the session already asks for act_equiv, and
    check the options given on the command line once, on the controlling process."""
    global _config
    _config = config
    flags = _act_flags(config)
    if "--act-target" in flags and str(SUITE) not in config.args:
        config.args.append(str(SUITE))
    if flags or "act_equiv.suite" in sys.modules:
        activate(config)
    if flags and not hasattr(config, "workerinput"):
        _check_options(config)


def activate(config: pytest.Config | None = None) -> None:
    """Set this process up for act_equiv: its Hypothesis profiles and one intra-op thread per xdist worker.
    Idempotent. Without a pytest session (no config) only the profiles are set up."""
    config = config if config is not None else _config
    if config is None:
        _load_profiles(chosen=None)
        return
    if config.stash.get(_ACTIVE, False):
        return
    config.stash[_ACTIVE] = True
    _load_profiles(chosen=config.getoption("hypothesis_profile", None))
    _one_thread_per_worker(config)


def record(verdict: CaseVerdict) -> CaseVerdict:
    """Hand a verdict to the session's report (through the running test's report; nothing outside a session)."""
    if _config is not None:
        _pending.append(json.dumps(verdict.to_dict(), default=str))
    return verdict


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the verdicts recorded since the last report to this one."""
    outcome = yield
    if _pending:
        outcome.get_result().__dict__[VERDICTS] = list(_pending)
        _pending.clear()


def _act_flags(config: pytest.Config) -> set[str]:
    """The `--act-*` options given (`--act-x v` or `--act-x=v`), even at their default values."""
    args = [*shlex.split(os.environ.get("PYTEST_ADDOPTS", "")), *config.getini("addopts"),
            *config.invocation_params.args]
    return {arg.split("=")[0] for arg in args if arg.startswith(PREFIX)}


def _load_profiles(chosen: str | None) -> None:
    """Register act_equiv's profiles; load the default one unless `--hypothesis-profile` chose (Hypothesis loads
    that; registering the loaded name reloads it, so a late activation still replaces Hypothesis's "ci")."""
    from hypothesis import settings

    from act_equiv import profiles

    profiles.register()
    if not chosen:
        settings.load_profile(profiles.default_profile())


def _one_thread_per_worker(config: pytest.Config) -> None:
    """N xdist workers x N intra-op threads oversubscribe the cores many times over."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and workerinput.get("workercount", 1) > 1:
        import torch

        torch.set_num_threads(1)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """On an active xdist controller, for each worker it starts: the run's claims directory (made once)."""
    config = node.config
    if not config.stash.get(_ACTIVE, False):
        return
    if _CLAIMS not in config.stash:
        config.stash[_CLAIMS] = tempfile.mkdtemp(prefix="act-equiv-claims-")
    node.workerinput[CLAIMS] = config.stash[_CLAIMS]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Forget the finished session, so that a later `activate()` cannot reach its config; remove its claims."""
    global _config
    if _config is config:
        _config = None
    if _CLAIMS in config.stash:
        shutil.rmtree(config.stash[_CLAIMS], ignore_errors=True)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """On the controlling process: the session's verdicts, every worker's, from the test reports into the session's
    report. With none (no test judged a case), nothing is read or made."""
    if hasattr(config, "workerinput"):
        return
    verdicts = [json.loads(line) for reports in terminalreporter.stats.values() for report in reports
                for line in getattr(report, VERDICTS, ())]
    if not verdicts:
        return
    from act_equiv import report
    from act_equiv.run.environment import gate_environment
    from act_equiv.settings import Settings

    env = gate_environment(Settings(**_options(config)))
    built = report.build(verdicts, env, {"kind": "pytest", "command": " ".join(["pytest", *config.args])})
    path = report.write(built, config.rootpath / config.getoption("act_report_dir"))
    compiled = built["compile"]
    terminalreporter.write_sep("-", "act_equiv")
    terminalreporter.write_line(
        f"act_equiv: {built['result']['cases']} cases judged, {compiled['compiled_cases']} compiled, "
        f"{compiled['distinct_compiled_structures']} distinct compiled structures, "
        f"{compiled['fell_back_to_eager']} eager fallbacks; report: {path}")
    for form, deployed in built["deployed"].items():
        terminalreporter.write_line(f"act_equiv: {form}: {deployed['cases']} cases, {deployed['distinct_structures']} "
                                    f"distinct structures exported, batch sizes {deployed['batch_sizes']}")


@pytest.fixture(scope="session")
def act_options(pytestconfig: pytest.Config) -> dict[str, Any]:
    """The `--act-*` options as keywords of `act_equiv.settings.Settings` (and so of `act_equiv.gate.Gate`)."""
    return _options(pytestconfig)


def _options(config: pytest.Config) -> dict[str, Any]:
    """The `--act-*` options as `Settings` keywords, and on an xdist worker the run's claims directory."""
    keywords = options.gate_keywords({option.name: config.getoption(option.dest(PREFIX)) for option in options.GATE})
    claims = getattr(config, "workerinput", {}).get(CLAIMS)
    return keywords if claims is None else {**keywords, "trained_claims": claims}


def _check_options(config: pytest.Config) -> None:
    """Build the session's gate once, up front: a bad `--act-*` option (an unknown target, autocast with float64)
    then stops the run before any test, on xdist's controller too, as a pytest usage error (exit code 4) that
    names the plugin's flag: `--act-target 'x:Y': cannot import module 'x'`."""
    from act_equiv.gate import Gate

    try:
        with Gate(**_options(config), explain=False):
            pass
    except UsageError as error:
        raise pytest.UsageError(f"act-equiv: {error.for_flags(PREFIX)}") from None
