"""`act-equiv check --reference lerobot@A --target lerobot@B` on a LeRobot repository built from the installed LeRobot
(`lerobot_repo`): a pure refactor and the move to the pre-2025 layout pass, bitwise; a numeric edit fails at the
model level and a loss-only edit at the policy level, each with a shrunk case; the refactor from a clone,
the layout move from a bare copy.
Both sides run in workers on a Python that imports LeRobot's dependencies (`.venv-lerobot` in CI); eager forms only
(`tests/test_gate_pr.py` compiles and exports the revision under test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lerobot_repo import bare_copy, lerobot_python, lerobot_source, make_repo

from act_equiv.cli import main

try:
    SOURCE = lerobot_source()
except LookupError as reason:
    pytest.skip(str(reason), allow_module_level=True)
PYTHON = lerobot_python()


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("lerobot") / "repo", SOURCE)


@pytest.fixture(scope="module")
def bare(clone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bare_copy(clone, tmp_path_factory.mktemp("bare") / "repo.git")


def gate(repo: Path, tmp_path: Path, target: str, reference: str = "installed") -> tuple[int, dict]:
    code = main(["check", "--reference", f"lerobot@{reference}", "--target", f"lerobot@{target}", "--lerobot-repo",
                 str(repo), "--reference-python", PYTHON, "--target-python", PYTHON, "--backend", "none",
                 "--profile", "ci", "--max-examples", "1", "--seed", "1", "--shrink-budget", "5",
                 "--report-dir", str(tmp_path)])
    [report] = tmp_path.glob("*/report.json")
    return code, json.loads(report.read_text())


@pytest.mark.parametrize(("repository", "target"), [("clone", "refactor"), ("bare", "old-layout")])
def test_a_refactor_and_a_move_to_the_old_layout_pass_bitwise(repository: str, target: str,
                                                              request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The refactor from a clone, the move to the old layout from a bare copy: resolving and extracting revisions
    works from both kinds of repository (`tests/test_revision.py` covers each kind in detail; here one gate run per
    kind end to end)."""
    _passes_bitwise(request.getfixturevalue(repository), tmp_path, target)


def _passes_bitwise(repo: Path, tmp_path: Path, target: str) -> None:
    code, report = gate(repo, tmp_path, target)
    assert code == 0, report["failures"]
    for level in ("model", "policy"):
        counts = report["classes"][level]["counts"]
        # LeRobot raises alike on both sides for configs without a robot state (finding 1): raised-both, a warning.
        assert set(counts) <= {"bitwise", "raised-both"} and counts["bitwise"] > 0, (level, counts)
    sides = report["environment"]["sides"]
    assert sides["target"]["layout"] == ("common" if target == "old-layout" else "src"), sides


def test_numeric_edit_fails_at_the_model_level_with_a_shrunk_case(clone: Path, tmp_path: Path) -> None:
    code, report = gate(clone, tmp_path, "numeric")
    assert code == 1
    [failure] = report["failures"]
    assert failure["classes"]["model"]["name"] == "divergent", failure["failures"]
    assert failure["shrink"] is not None and failure["describe"]


def test_loss_only_edit_fails_at_the_policy_level_only(clone: Path, tmp_path: Path) -> None:
    code, report = gate(clone, tmp_path, "policy-loss")
    assert code == 1
    [failure] = report["failures"]
    assert failure["classes"]["model"]["name"] == "bitwise", failure["failures"]
    assert failure["classes"]["policy"]["name"] == "divergent" and "padded" in failure["describe"]
    assert "divergent" not in report["classes"]["model"]["counts"]


def test_an_older_contract_that_stacks_cameras_skips_what_it_cannot_express(clone: Path, tmp_path: Path) -> None:
    """Before 2025-03 LeRobot stacked its cameras into one tensor: as the reference it cannot run cameras of
    different shapes (those cases are skipped with the reason); every other case compares bitwise."""
    code, report = gate(clone, tmp_path, "installed", reference="stacked-images")
    assert code == 0, report["failures"]
    assert report["environment"]["sides"]["reference"]["cameras"] == "stacked"
    counts = report["classes"]["model"]["counts"]
    assert set(counts) <= {"bitwise", "raised-both", "unsupported"} and counts["bitwise"] > 0, counts
    assert counts.get("unsupported", 0) == report["result"]["skipped"] > 0, (counts, report["result"])


def test_a_backbone_left_out_of_the_optimizer_fails_on_the_backbone_after_the_first_step(
        clone: Path, tmp_path: Path) -> None:
    """`get_optim_params` filters the backbone group on a renamed module: forward, loss and gradients stay bitwise,
    only training shows it: the backbone's parameters stay where they were from the first optimizer step."""
    code, report = gate(clone, tmp_path, "optim-groups")
    assert code == 1
    [failure] = report["failures"]
    assert failure["classes"]["model"]["name"] == "bitwise", failure["failures"]
    trajectory = failure["classes"]["trajectory"]
    assert trajectory["name"] == "divergent", failure["failures"]
    assert "divergent from step 1 on step1/" in trajectory["evidence"], trajectory["evidence"]
    assert any("model.backbone." in line for line in failure["failures"]), failure["failures"]
    assert "divergent" not in report["classes"]["model"]["counts"]
