"""A LeRobot pull request gated on every form, as a reviewer runs it: `--reference lerobot@HEAD --target
lerobot@WORKTREE` (an uncommitted edit) and the same edit committed (`lerobot@installed` vs `lerobot@<tag>`). The
revision under test is compiled, exported and checkpoint-checked in its own worker (`act_equiv.run.form_runner`):
an edit that breaks the compiled graph, one whose compiled forward drifts and one whose policy compiles its model
(renaming its checkpoint's keys) fail (a pure `torch.cat` refactor passing with compiled and exported cases
counted: tests/test_ci_workflow.py, the same command as a LeRobot fork's CI runs it).
Both sides run in workers on a Python that imports LeRobot (`.venv-lerobot` in CI)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import helpers
import pytest
from lerobot_repo import lerobot_python, lerobot_source, make_repo, worktree_with

from act_equiv.case import MUST_KEEP_INFERENCE
from act_equiv.cli import main
from act_equiv.oracle.verdict import CaseVerdict

try:
    SOURCE = lerobot_source()
except LookupError as reason:
    pytest.skip(str(reason), allow_module_level=True)
PYTHON = lerobot_python()

Sides = Callable[..., tuple[str, str, Path]]
CASE = helpers.without_cameras(MUST_KEEP_INFERENCE)
"""Inference with a robot and an environment state, without cameras: every form runs it (LeRobot raises alike on
both sides without a robot state; the deployment forms take no actions), and the edits under test touch the encoder's
output, not the cameras (the backbones were most of each compile and export)."""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("lerobot") / "repo", SOURCE)


@pytest.fixture
def sides(repo: Path, tmp_path: Path) -> Sides:
    """`sides(tag)`: (reference, target, repository) comparing `tag`'s edit with `installed` as an uncommitted edit
    in a clone's working tree (the PR command); `sides(tag, committed=True)`: the edit committed (`lerobot@installed`
    vs `lerobot@<tag>`)."""

    def make(tag: str, committed: bool = False) -> tuple[str, str, Path]:
        if committed:
            return "lerobot@installed", f"lerobot@{tag}", repo
        return "lerobot@HEAD", "lerobot@WORKTREE", worktree_with(repo, tmp_path / "clone", tag)

    return make


def gate(sides: tuple[str, str, Path], report_dir: Path, capsys: pytest.CaptureFixture[str],
         forms: str = "compiled") -> tuple[int, dict, str]:
    """The reviewer's command, kept cheap for CI: dynamo's `eager` backend (it traces, breaks and recompiles as any
    backend does, and runs the captured graph without AOTAutograd's compile), one compared case per stage, the first
    failing case reported unshrunk (shrinking between two revisions: tests/test_gate_revisions.py); training eager
    only (a worker side's compiled training: tests/test_sides.py)."""
    reference, target, repo = sides
    code = main(["check", "--reference", reference, "--target", target, "--lerobot-repo", str(repo),
                 "--reference-python", PYTHON, "--target-python", PYTHON, "--forms", forms, "--backend", "eager",
                 "--trained-structures", "0",
                 "--profile", "ci", "--max-examples", "1", "--seed", "1", "--shrink-budget", "0",
                 "--report-dir", str(report_dir / "reports")])
    [report] = (report_dir / "reports").glob("*/report.json")
    return code, json.loads(report.read_text()), capsys.readouterr().out


def verdict(sides: tuple[str, str, Path], forms: str = "compiled") -> CaseVerdict:
    """`CASE`'s verdict under the reviewer's settings (`gate`'s), without the search and its report: for what one
    case shows, once the command around it is tested."""
    reference, target, repo = sides
    return helpers.verdict(target, CASE, reference=reference, lerobot_repo=str(repo), reference_python=PYTHON,
                           target_python=PYTHON, forms=forms, backend="eager", explain=True)


def test_a_graph_break_fails_with_its_file_and_line_and_the_export_fails_in_the_worker(
        sides: Sides, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reference, target, repo = sides("graph-break")
    code, report, out = gate((reference, target, repo), tmp_path, capsys, forms="compiled,exported")
    assert code == 1, out
    assert out.splitlines()[0].endswith("forms: reference eager (worker); target eager, compiled (eager), exported "
                                        "(worker)"), out.splitlines()[0]
    [failure] = report["failures"]
    found = {finding["check"]: finding["message"] for finding in failure["findings"]}
    assert "graph_break" in found and "modeling_act.py:" in found["graph_break"], found
    assert "export_raised" in found and "exported" in found["export_raised"], found
    assert {c["name"] for c in failure["classes"].values()} == {"bitwise"}, failure["classes"]
    # The compile section agrees with the failure: the break is counted and its reason listed.
    assert report["compile"]["graph_breaks_compiled"] > 0 and any(
        "modeling_act.py:" in reason for reason in report["compile"]["break_reasons"]), report["compile"]
    # The reviewer edits the working tree after the run: replay says what it compares, and that the code moved.
    recorded = report["environment"]["sides"]["target"]["content"]
    modeling = repo / "src" / "lerobot" / "policies" / "act" / "modeling_act.py"
    modeling.write_text(modeling.read_text() + "\n# edited after the run\n")
    [path] = (tmp_path / "reports").glob("*/report.json")
    assert main(["replay", str(path)]) == 1
    out = capsys.readouterr().out
    assert "target: lerobot@WORKTREE (worker pid " in out and f"content {recorded})" not in out
    assert f"warning: target lerobot@WORKTREE now holds other code than the report recorded (content {recorded} " \
           "then" in out, out
    assert "reference: lerobot@HEAD (worker" in out and "graph_break" in out


def test_a_committed_revision_is_compiled_and_exported_in_its_own_worker(sides: Sides) -> None:
    """`lerobot@<tag>` against `lerobot@installed` (a release, another branch): the revision under test compiles and
    exports in its worker as the working tree does above."""
    found = verdict(sides("graph-break", committed=True), forms="compiled,exported")
    checks = {finding.check: finding.message for finding in found.findings}
    assert "graph_break" in checks and "modeling_act.py:" in checks["graph_break"], checks
    assert "export_raised" in checks and "exported" in checks["export_raised"], checks
    assert {c.name for c in found.classes.values()} == {"bitwise"}, found.classes


def test_a_compiled_forward_that_drifts_is_a_compiled_divergence(sides: Sides) -> None:
    found = verdict(sides("compiled-drift"))
    assert not found.passed
    assert any(check.pair.startswith("target/compiled") and not check.passed for check in found.checks), found.summary()
    assert found.classes["model"].name == "bitwise", found.classes


def test_a_policy_that_compiles_its_model_breaks_the_checkpoint_contract(
        sides: Sides, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, out = gate(sides("compiled-policy"), tmp_path, capsys)
    assert code == 1, out
    [failure] = report["failures"]
    policy = failure["classes"]["policy"]
    assert policy["name"] == "layout" and "`_orig_mod.`" in policy["evidence"], policy
    assert "getattr(model, '_orig_mod', model)" in policy["evidence"]
    # The inner model is untouched (on a case without a robot state LeRobot raises alike on both sides).
    assert failure["classes"]["model"]["name"] in ("bitwise", "raised-both"), failure["classes"]


def test_a_form_the_targets_interpreter_cannot_run_is_a_usage_error_naming_the_package(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The worker answers for its own interpreter, before any case runs: exit 2, never a silent PASS."""
    if subprocess.run([PYTHON, "-c", "import onnxruntime"], capture_output=True, check=False).returncode == 0:
        pytest.skip(f"{PYTHON} has onnxruntime: nothing is missing there")
    code = main(["check", "--target", "concat", "--target-python", PYTHON, "--forms", "compiled,onnx",
                 "--max-examples", "1"])
    error = capsys.readouterr().err
    assert code == 2, error
    assert "--forms 'onnx': the onnx form needs" in error and "onnxruntime" in error, error
    assert f"the target runs on {PYTHON}: install it there" in error, error


def test_a_checkpoint_that_does_not_give_the_weights_back_breaks_the_checkpoint_contract(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Both sides are LeRobot policies with `save_pretrained`: each side's checkpoint must load strictly into the
    other's policy and give its weights back bit for bit. A checkpoint written in half precision does not."""
    code = main(["check", "--reference", "lerobot@installed", "--target", "lerobot@checkpoint-half",
                 "--lerobot-repo", str(repo), "--reference-python", PYTHON, "--target-python", PYTHON,
                 "--backend", "none", "--profile", "ci", "--max-examples", "1", "--seed", "1", "--shrink-budget", "5",
                 "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1, out
    [report] = tmp_path.glob("*/report.json")
    [failure] = json.loads(report.read_text())["failures"]
    policy = failure["classes"]["policy"]
    assert policy["name"] == "layout" and "checkpoint round trip failed" in policy["evidence"], policy
    assert "target's save_pretrained checkpoint does not load into the reference's policy" in policy["evidence"]
