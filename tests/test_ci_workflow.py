"""docs/CI.md's example workflow for a LeRobot fork, run as GitHub would run its shell steps: in a clone of the test
LeRobot repository holding a pull request's uncommitted edit (the `cat-refactor`, which must pass on every form that
ships), with the `GITHUB_*` variables set. Every `run:` step but `Install` (it needs the network; the test's
interpreters stand in for what it installs) runs with bash."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lerobot_repo import git, lerobot_python, lerobot_source, make_repo, worktree_with

try:
    SOURCE = lerobot_source()
except LookupError as reason:
    pytest.skip(str(reason), allow_module_level=True)
PYTHON = lerobot_python()
CI_DOC = Path(__file__).parents[1] / "docs" / "CI.md"


def workflow() -> dict:
    """The first YAML block of docs/CI.md, parsed."""
    block = re.search(r"```yaml\n(.*?)```", CI_DOC.read_text(), re.S)
    assert block is not None, "docs/CI.md has no ```yaml block"
    return yaml.safe_load(block.group(1))


def expand(text: str, expressions: dict[str, str]) -> str:
    """`${{ expression }}` as GitHub substitutes it, for the expressions the test knows."""
    return re.sub(r"\$\{\{\s*(.*?)\s*\}\}", lambda m: expressions[m.group(1)], text)


def test_the_example_workflow_gates_a_pull_request(tmp_path: Path) -> None:
    flow = workflow()
    trigger = flow.get("on", flow.get(True))  # YAML 1.1 reads the key `on` as true
    assert trigger["pull_request"]["paths"] == ["src/lerobot/policies/act/**"]
    [job] = flow["jobs"].values()
    clone = worktree_with(make_repo(tmp_path / "repo", SOURCE), tmp_path / "clone", "cat-refactor")
    base = git(clone, "rev-parse", "HEAD")
    (clone / ".github").mkdir()
    (clone / ".github" / "act-equiv-baseline.json").write_text(json.dumps({"schema": "act_equiv.baseline/1",
                                                                           "findings": []}))
    summary = tmp_path / "step_summary.md"
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, **job.get("env", {}), "CI": "true", "GITHUB_ACTIONS": "true",
           "GITHUB_WORKSPACE": str(clone), "GITHUB_STEP_SUMMARY": str(summary),
           "GITHUB_EVENT_NAME": "pull_request", "PATH": bin_dir + os.pathsep + os.environ["PATH"],
           # The runner's python imports LeRobot; here that is the LeRobot venv. One compared case per stage, dynamo's
           # eager backend, no compiled training (a worker side's: tests/test_sides.py): the workflow's steps, at a
           # test's cost.
           "ACT_EQUIV_OPTIONS": f"--reference-python {PYTHON} --target-python {PYTHON} --max-examples 1 "
                                "--backend eager --trained-structures 0"}
    expressions = {"github.event.pull_request.base.sha": base}
    ran = []
    for step in job["steps"]:
        if "run" not in step or step.get("name") == "Install":
            continue
        step_env = {name: expand(str(value), expressions) for name, value in step.get("env", {}).items()}
        done = subprocess.run(["bash", "-eo", "pipefail", "-c", expand(step["run"], expressions)], cwd=clone,
                              env={**env, **step_env}, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"step {step.get('name')!r}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        ran.append(step.get("name"))
    assert ran == ["Gate the ACT edit"]
    assert summary.read_text().startswith("### act-equiv check: PASS")
    assert "<testsuite" in (clone / "reports" / "act-equiv.xml").read_text()
    [report] = (clone / "reports").glob("*/report.json")
    data = json.loads(report.read_text())
    assert data["environment"]["sides"]["reference"]["commit"] == base
    assert data["environment"]["sides"]["target"]["spec"] == "lerobot@WORKTREE"
    # A pure `torch.cat` refactor passes with its compiled structures and export cases counted, none run eagerly.
    assert data["compile"]["distinct_compiled_structures"] > 0 and data["compile"]["fell_back_to_eager"] == 0
    assert data["deployed"]["exported"]["cases"] > 0
    for level in ("model", "policy"):
        assert set(data["classes"][level]["counts"]) <= {"bitwise", "raised-both"}, data["classes"][level]
