"""The gate end to end, as a contributor runs it: subprocesses, exit codes, reports, replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import helpers
import pytest

from act_equiv.case import MUST_KEEP
from act_equiv.cli import main, options
from act_equiv.run.environment import gate_environment
from act_equiv.settings import Settings

TESTS = Path(__file__).parent


def python_path() -> str:
    """tests/ for `gate_targets`, then the caller's PYTHONPATH (a checkout put first on the path stays first)."""
    return os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))


def act_equiv(*args: str, cwd: Path, **environ: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": python_path(), "OMP_NUM_THREADS": "1", **environ}
    return subprocess.run([sys.executable, "-m", "act_equiv", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def only_report(directory: Path) -> dict:
    (path,) = directory.glob("*/report.json")
    return json.loads(path.read_text())


@pytest.mark.compile
def test_clean_target_exits_0_with_a_report(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    done = act_equiv("check", "--max-examples", "2", "--trained-structures", "0", "--profile", "ci", "--report-dir",
                     "out", "--junitxml", str(junit), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = only_report(tmp_path / "out")
    assert report["schema"] == "act_equiv.report/4" and report["result"]["passed"]
    stages = report["coverage"]
    assert stages["covering"]["cases"] == 2 * report["run"]["covering_rows"] and stages["eager"]["cases"] == 10
    assert stages["compiled"]["cases"] == 2 and report["compile"]["compiled_cases"] == 2
    eager = stages["eager stages"]["interactions"]
    assert eager["hit"] == eager["total"] > 1000  # every valid 3-way combination, whatever the seed
    assert report["result"]["cases"] == sum(stages[s]["cases"] for s in ("covering", "eager", "compiled"))
    assert (next((tmp_path / "out").glob("*/summary.md"))).read_text().startswith("# act_equiv check: PASS")
    assert "<testsuite" in junit.read_text()
    assert "[1/2]" in done.stdout  # progress


def test_known_bad_target_exits_1_fast_with_a_screenful_a_shrunk_two_camera_case_and_a_replay(tmp_path: Path) -> None:
    """Fast: the eager covering array finds it, and nothing is compiled. The screenful: the verdict per level, the
    shrunk case with the config fields that differ from the defaults, its first failure lines, the report path, and
    the replay command as the last line; the rest stays in summary.md. Under GitHub Actions the same verdict goes to
    the job's summary page too."""
    page = tmp_path / "step_summary.md"
    page.write_text("earlier step\n")
    done = act_equiv("check", "--target", "gate_targets:CameraTokensReversed", "--profile", "ci",
                     "--max-examples", "50", "--shrink-budget", "10", "--report-dir", "out", cwd=tmp_path,
                     GITHUB_STEP_SUMMARY=str(page))
    assert done.returncode == 1, done.stdout + done.stderr
    report = only_report(tmp_path / "out")
    assert list(report["coverage"]) == ["covering"] and report["compile"]["compiled_cases"] == 0, report["coverage"]
    (failure,) = report["failures"]
    assert len(failure["case"]["config"]["camera_shapes"]) == 2
    # The levels the shrunk case still diverges on (the model's, or only the trajectory's: shrinking is timed).
    divergent = [f"[{level}: divergent]" for level, c in failure["classes"].items() if c["name"] == "divergent"]
    assert divergent, failure["classes"]

    lines = done.stdout.splitlines()
    assert len(lines) < 60, done.stdout
    assert lines[-1] == f"replay: {failure['replay']}" and lines[-1].endswith("--failure 0"), lines[-1]
    fail = next(i for i, line in enumerate(lines) if line.startswith("FAIL: "))
    assert lines[fail + 2].startswith("  config (differs from ACTConfig's defaults): ") and "camera_shapes=" in \
        lines[fail + 2], lines[fail:fail + 4]
    assert any(divergent[0] in line for line in lines[fail:]), lines
    assert any(line.startswith("report: ") and line.endswith("summary.md") for line in lines)
    summary = page.read_text()
    assert summary.startswith("earlier step\n### act-equiv check: FAIL")
    assert "| level | class | cases per class |" in summary and divergent[0] in summary
    assert f"Replay: `{failure['replay']}`" in summary

    assert failure["replay"].startswith("act-equiv replay ")
    replay = act_equiv(*failure["replay"].split()[1:], cwd=tmp_path)
    assert replay.returncode == 1 and "FAIL" in replay.stdout and "reference/target" in replay.stdout


@pytest.mark.compile
def test_an_export_only_bug_exits_1_with_a_shrunk_two_camera_case_and_a_replay(tmp_path: Path) -> None:
    done = act_equiv("check", "--target", "gate_targets:LastCameraDroppedWhenExported", "--forms", "exported",
                     "--trained-structures", "0", "--profile", "ci", "--max-examples", "3", "--shrink-budget", "10",
                     "--report-dir", "out",
                     cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    report = only_report(tmp_path / "out")
    assert report["environment"]["forms"] == "exported" and report["environment"]["backend"] is None
    # No deployment form runs in training: the compiled search draws eval cases only.
    assert set(report["coverage"]["compiled"]["features"]["training"]) == {"False"}, report["coverage"]["compiled"]
    (failure,) = report["failures"]
    assert len(failure["case"]["config"]["camera_shapes"]) == 2 and failure["case"]["training"] is False
    assert any(line.startswith("[target/exported") for line in failure["failures"]), failure["failures"]
    replay = act_equiv(*failure["replay"].split()[1:], cwd=tmp_path)
    assert replay.returncode == 1 and "target/exported" in replay.stdout


@pytest.mark.parametrize(
    ("target", "message"),
    [("no_such_module:ACT", "cannot import module 'no_such_module'"),
     ("gate_targets:Missing", "has no attribute 'Missing'"),
     ("gate_targets", "use MODULE:ATTR")],
)
def test_bad_target_exits_2_with_one_clear_line(tmp_path: Path, target: str, message: str,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["check", "--target", target]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "reports").exists()


def test_bad_option_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As the process's exit status (argparse's own error), and as main's return value for the rules between
    options."""
    done = act_equiv("check", "--backend", "tvm", cwd=tmp_path)
    assert done.returncode == 2 and "invalid choice: 'tvm'" in done.stderr
    assert main(["check", "--mode", "reduce-overhead", "--backend", "eager"]) == 2
    assert "needs --backend 'inductor'" in capsys.readouterr().err
    assert main(["check", "--autocast", "bfloat16", "--dtype", "float64"]) == 2
    assert "--autocast 'bfloat16' needs --dtype 'float32'" in capsys.readouterr().err


@pytest.mark.parametrize("keywords", [
    {},
    {"backend": None, "dynamic": True, "strict": True, "autocast": "bfloat16", "reference": "lerobot@v1",
     "lerobot_repo": "/repo", "reference_python": "/venv/bin/python", "worker_timeout": 30.0},
    {"backend": "inductor", "mode": "max-autotune", "dynamic": False, "dtype": "float64", "train_steps": 5},
    {"forms": "exported,onnx", "onnx_exporter": "torchscript", "trained_structures": 0},
], ids=["defaults", "sides", "inductor", "deployed"])
def test_replay_reads_a_reports_environment_back_through_the_option_table(keywords: dict) -> None:
    """What a report states (`backend: null`, `strict: true`) maps back to the same settings."""
    settings = Settings(**keywords)
    assert Settings(**options.gate_keywords(options.option_values(gate_environment(settings)))) == settings


@pytest.mark.compile
def test_shrinking_stops_at_its_budget_and_says_so(tmp_path: Path) -> None:
    """A compiled-only bug that needs a camera: with no shrink budget the report comes at once and says that its
    case is only the smallest found so far."""
    done = act_equiv("check", "--target", "gate_targets:GraphBreakWithCameras", "--profile", "ci", "--max-examples",
                     "2", "--backend", "eager", "--trained-structures", "0", "--shrink-budget", "0", "--report-dir",
                     "out", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    (failure,) = only_report(tmp_path / "out")["failures"]
    assert failure["shrink"]["stopped_at_budget"] and failure["findings"][0]["check"] == "graph_break"
    assert "Shrinking stopped at the budget" in next((tmp_path / "out").glob("*/summary.md")).read_text()


def test_target_that_raises_exits_1_and_is_reported(tmp_path: Path) -> None:
    done = act_equiv("check", "--target", "gate_targets:Raises", "--profile", "ci", "--max-examples", "5",
                     "--report-dir", "out", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    (failure,) = only_report(tmp_path / "out")["failures"]
    raised = failure["classes"]["model"]
    assert raised["name"] == "raised" and "the target raised RuntimeError" in raised["evidence"]
    assert "this ACT edit is broken" in raised["evidence"] and "gate_targets.py" in raised["evidence"]
    assert any("gate_targets.py" in line for line in raised["detail"]["target"]["traceback"])


def test_pytest_plugin_runs_the_suite_against_another_repos_target(tmp_path: Path) -> None:
    """Another repo: no act_equiv tests of its own, only `--act-target` (the pytest11 entry point)."""
    (tmp_path / "conftest.py").write_text("")
    env = {**os.environ, "PYTHONPATH": python_path()}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "must_keep and eval"]
    bad = subprocess.run([*command, "--act-target", "gate_targets:CameraTokensReversed"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and "1 failed" in bad.stdout, bad.stdout[-2000:]
    assert "reference/target" in bad.stdout
    assert (tmp_path / "reports" / "pytest" / "report.json").is_file()


def test_coverage_counts_compared_cases_only_and_lists_what_only_uncompared_cases_drew(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Both sides raise alike on every case without a robot state: those cases are drawn, not covered."""
    monkeypatch.syspath_prepend(str(TESTS))
    code = main(["check", "--reference", "gate_targets:NoStateCrash", "--target", "gate_targets:NoStateCrash",
                 "--backend", "none", "--profile", "ci", "--seed", "1", "--max-examples", "2",
                 "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    report = only_report(tmp_path)
    eager = report["coverage"]["eager stages"]
    assert eager["cases"] == report["result"]["compared"] < eager["drawn"] == report["result"]["cases"]
    assert eager["interactions"]["hit"] < eager["interactions"]["total"]
    lost = eager["drawn_not_compared"]
    assert lost["count"] > 0 and lost["count"] == eager["interactions"]["total"] - eager["interactions"]["hit"]
    assert list(lost["by_reason"]) == ["both sides raise KeyError at forward"]
    assert lost["combos"] and all(entry["reason"] in lost["by_reason"] for entry in lost["combos"])
    rows = report["result"]["rows_not_compared"]
    assert rows and all(row["reason"] == "both sides raise KeyError at forward" for row in rows)
    assert f"warning: covering-array row {rows[0]['row']} compared nothing" in out
    summary = next(tmp_path.glob("*/summary.md")).read_text()
    assert "drawn only by cases that compared nothing" in summary


def test_what_torch_writes_to_stderr_goes_to_the_report_directorys_log(tmp_path: Path) -> None:
    done = act_equiv("check", "--target", "gate_targets:Noisy", "--backend", "none", "--profile", "ci",
                     "--max-examples", "1", "--report-dir", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "graph dump (" not in done.stderr and "graph dump (" not in done.stdout
    [log] = (tmp_path / "out").glob("*/torch.log")
    text = log.read_text()
    assert "graph dump (python)" in text and "graph dump (fd)" in text
    assert f"{log.relative_to(tmp_path)} (" in done.stdout


SECOND_PASS = {
    # mutant: what the shrunk failure must still have (each passed the ci check before the second soundness pass)
    "layer_norm_affine_dropped_in_eval": lambda case: not case["training"] and case["weight_scale"] > 0,
    "deep_layers_drop_residual": lambda case: case["config"]["n_encoder_layers"] >= 3,
    "backbone_micro_batched": lambda case: case["batch"]["batch_size"] in (5, 6, 7) and case["config"]["camera_shapes"],
}


@pytest.mark.parametrize("target", sorted(SECOND_PASS))
def test_bugs_that_hid_behind_init_weights_depth_or_batch_size_fail_the_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    """Weights drawn away from init, LeRobot's depth and batches past 4 in the covering array: each bug is found
    in the eager stages of a ci check and shrunk to a case that still shows it."""
    monkeypatch.syspath_prepend(str(TESTS))
    assert main(["check", "--target", f"mutant:{target}", "--backend", "none", "--profile", "ci", "--seed", "1",
                 "--report-dir", str(tmp_path)]) == 1, capsys.readouterr().out
    [failure] = only_report(tmp_path)["failures"]
    assert failure["classes"]["model"]["name"] == "divergent", failure["failures"]
    assert SECOND_PASS[target](failure["case"]), failure["case"]


def test_a_target_factory_may_return_its_own_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork's own policy (its queue, ensembler, loss) is compared at the policy level when the target's factory
    returns a policy: the model level stays bitwise, the queue's order is divergent (the control: below)."""
    monkeypatch.syspath_prepend(str(TESTS))
    assert main(["check", "--target", "gate_targets:queue_last_first_policy", "--backend", "none", "--profile", "ci",
                 "--seed", "1", "--max-examples", "2", "--report-dir", str(tmp_path)]) == 1, capsys.readouterr().out
    report = only_report(tmp_path)
    assert "QueueLastFirstPolicy" in report["environment"]["sides"]["target"]["policy"], report["environment"]
    [failure] = report["failures"]
    assert failure["classes"]["policy"]["name"] == "divergent", failure["failures"]
    assert failure["classes"]["model"]["name"] == "bitwise", failure["failures"]


def test_a_time_budget_never_drops_compiled_training(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The covering array always runs whole; a budget it used up ends the eager sweep at once, and the compiled search
    still compares a case in each mode the compiled form runs in, so a drift only compiled training shows is found
    (before: PASS with 0 compiled cases; before that, Hypothesis raised `Unsatisfiable` and no report was written).
    Dynamo's eager backend: the drift is in what dynamo traces, whatever backend runs it."""
    monkeypatch.syspath_prepend(str(TESTS))
    assert main(["check", "--target", "gate_targets:CompiledGradientDrift", "--backend", "eager", "--profile",
                 "ci", "--seed", "1", "--trained-structures", "0", "--time-budget", "0.001", "--shrink-budget", "0",
                 "--report-dir", str(tmp_path)]) == 1, capsys.readouterr().out
    report = only_report(tmp_path)
    assert report["coverage"]["covering"]["cases"] == 2 * report["run"]["covering_rows"]
    [failure] = report["failures"]
    assert failure["case"]["training"] and any("target/compiled" in line for line in failure["failures"]), failure


def test_a_target_that_writes_into_its_inputs_is_an_input_mutated_finding(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call gets its own copy of the batch, so the reference's and the float64 evidence's inputs stay pristine,
    and a side that writes into its copy is named with the key (the control: below)."""
    assert main(["check", "--target", "mutant:state_clamped_in_place", "--backend", "none", "--profile", "ci",
                 "--seed", "1", "--max-examples", "2", "--report-dir", str(tmp_path)]) == 1, capsys.readouterr().out
    [failure] = only_report(tmp_path)["failures"]
    [finding] = [f for f in failure["findings"] if f["check"] == "input_mutated"]
    assert "observation.state" in finding["message"] and "the target" in finding["message"], finding
    assert failure["case"]["training"]


@pytest.mark.parametrize("target", ["gate_targets:own_policy", "gate_targets:ClampsStateCopy"],
                         ids=["own-policy", "clamps-a-copy"])
def test_the_controls_of_the_policy_and_input_findings_pass_bitwise(target: str) -> None:
    """A factory that returns act_equiv's own policy, and a side that clamps its own copy of an input, pass bitwise at
    every level in both modes, judged case by case under the two runs' settings (the command around them is tested
    above)."""
    with helpers.gate(target, backend=None) as gate:
        for case in MUST_KEEP:
            found = gate.verdict(case, compiled=False)
            assert found.passed and {c.name for c in found.classes.values()} == {"bitwise"}, found.summary()
        assert gate.runner.target.policy_name == "act_equiv.models.policy.ACTPolicy"
