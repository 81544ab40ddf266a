"""pytest plugin (entry point `pytest11`): run act_equiv's property suite against any ACT.

    pytest -n auto --act-target mypkg.modeling:make_act

Options live in one group, `act-equiv`. Importing this module loads neither torch nor the package: that
happens when a test asks for a fixture.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

SUITE = Path(__file__).with_name("suite.py")
_SESSION = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("act-equiv", "act_equiv: differential testing of ACT forms")
    group.addoption("--act-target", default=None,
                    help="model under test: MODULE:ATTR (ACTConfig -> nn.Module) or a built-in name; "
                         "adds act_equiv's property suite to the run (default target: concat)")
    group.addoption("--act-device", default="cpu", choices=("cpu", "cuda"), help="device for every form")
    group.addoption("--act-dtype", default="float32", choices=("float32", "float64"), help="model and input dtype")
    group.addoption("--act-backend", default="aot_eager", choices=("inductor", "aot_eager", "eager", "none"),
                    help="torch.compile backend for the compiled form ('none': no compiled form)")
    group.addoption("--act-autocast", default="none", choices=("none", "bfloat16", "float16"),
                    help="run every form but the float64 reference under torch.autocast in this dtype")
    group.addoption("--act-mode", default=None, choices=("default", "reduce-overhead", "max-autotune"),
                    help="torch.compile mode (inductor only)")
    group.addoption("--act-dynamic", default="auto", choices=("auto", "true", "false"),
                    help="torch.compile dynamic= (auto: None, dynamo decides)")
    group.addoption("--act-report-dir", default="reports/pytest",
                    help="where the session's report goes (relative to the rootdir)")
    group.addoption("--act-eager-tolerance", default="bitwise", choices=("bitwise", "rounding"),
                    help="target eager vs legacy: bitwise (default) or assert_close rounding")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    from act_equiv import profiles

    profiles.register()
    if not config.getoption("hypothesis_profile", None):
        from hypothesis import settings

        settings.load_profile(profiles.default_profile())
    if config.getoption("act_target") and str(SUITE) not in config.args:
        config.args.append(str(SUITE))
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and workerinput.get("workercount", 1) > 1:
        # One intra-op thread per worker: N workers x N threads oversubscribe the cores many times over.
        import torch

        torch.set_num_threads(1)
    from act_equiv import record

    # Each session writes under its own id, so sessions sharing the directory (a nested pytest run, a second
    # terminal) never mix or delete each other's verdicts.
    session = workerinput["act_equiv_session"] if workerinput else f"{os.getpid()}-{time.time_ns()}"
    config.stash[_SESSION] = session
    record.open_sink(_record_dir(config), f"{session}-{workerinput['workerid'] if workerinput else 'main'}")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: hand the controller's session id to each worker."""
    node.workerinput["act_equiv_session"] = node.config.stash[_SESSION]


def _record_dir(config: pytest.Config) -> Path:
    return config.rootpath / config.getoption("act_report_dir")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """On the controlling process: aggregate every worker's verdicts into reports/pytest/."""
    if hasattr(config, "workerinput"):
        return
    from act_equiv import record, report

    session_files = sorted(_record_dir(config).glob(f"verdicts-{config.stash[_SESSION]}-*.jsonl"))
    verdicts = record.collect(session_files)
    for path in session_files:
        path.unlink()
    if not verdicts:
        return
    from act_equiv.gate import environment

    env = environment(**_options(config))
    built = report.build(verdicts, env, {"kind": "pytest", "command": " ".join(["pytest", *config.args])})
    path = report.write(built, _record_dir(config))
    compiled = built["compile"]
    terminalreporter.write_sep("-", "act_equiv")
    terminalreporter.write_line(
        f"act_equiv: {built['result']['cases']} cases judged, {compiled['compiled_cases']} compiled, "
        f"{compiled['distinct_compiled_structures']} distinct compiled structures, "
        f"{compiled['fell_back_to_eager']} eager fallbacks; report: {path}")


@pytest.fixture(scope="session")
def act_options(pytestconfig: pytest.Config) -> dict[str, Any]:
    """The `--act-*` options as keywords for `act_equiv.gate.Gate`."""
    return _options(pytestconfig)


def _options(config: pytest.Config) -> dict[str, Any]:
    get = config.getoption
    backend = get("act_backend")
    return {
        "target": get("act_target") or "concat",
        "device": get("act_device"),
        "dtype": get("act_dtype"),
        "backend": None if backend == "none" else backend,
        "mode": get("act_mode"),
        "dynamic": {"auto": None, "true": True, "false": False}[get("act_dynamic")],
        "eager_rounding": get("act_eager_tolerance") == "rounding",
        "autocast": None if get("act_autocast") == "none" else get("act_autocast"),
    }
