"""Greedy shrinking: cheapest candidates first, the same failure kept, the budget honoured."""

from __future__ import annotations

import dataclasses

from act_equiv.case import MUST_KEEP, BatchSpec, Case
from act_equiv.config import ACTConfig
from act_equiv.oracle.verdict import CaseVerdict, Finding, PairClass
from act_equiv.shrink import candidates, shrink, structure_cost

TRAIN = MUST_KEEP[1]


def test_candidates_keep_the_structure_first_then_cheapest_structures() -> None:
    """Batch changes reuse the compiled graph (no recompile), so they come before any new structure, and new
    structures come cheapest first: a shrinking compiled failure compiles the fastest candidates first."""
    listed = candidates(TRAIN)
    same = [c for c in listed if c.config == TRAIN.config]
    assert listed[: len(same)] == same and len(same) >= 4
    costs = [structure_cost(c.config) for c in listed[len(same):]]
    assert costs == sorted(costs) and costs[0] < structure_cost(TRAIN.config)
    assert all(c != TRAIN for c in listed)


def test_candidates_respect_the_config_rules() -> None:
    """Dropping the only camera of a config without an environment state would break LeRobot's rule: not offered."""
    case = Case(ACTConfig(state_dim=2, camera_shapes=[(3, 32, 32)], vision_backbone="tiny_resnet", dim_model=8,
                          n_heads=1, dim_feedforward=8, chunk_size=2, n_action_steps=2), BatchSpec())
    assert all(c.config.camera_shapes or c.config.env_state_dim for c in candidates(case))


def verdict_for(case: Case, check: str | None) -> CaseVerdict:
    return CaseVerdict(case, findings=[Finding(check, "injected")] if check else [])


def test_shrink_keeps_only_candidates_that_fail_the_same_way() -> None:
    """A failure needs two cameras; candidates failing another way (a different finding) are not taken."""
    def judge(case: Case) -> CaseVerdict:
        if len(case.config.camera_shapes) >= 2:
            return verdict_for(case, "graph_break")
        return verdict_for(case, "target_raised" if case.config.use_vae else None)

    result = shrink(judge, verdict_for(TRAIN, "graph_break"), budget=60)
    best = result.verdict.case
    assert len(best.config.camera_shapes) == 2 and not best.training and best.batch.batch_size == 1
    assert not best.config.use_vae and best.config.state_dim is None and best.config.env_state_dim is None
    assert not result.stopped_at_budget


def test_shrink_stops_at_its_budget_with_the_best_case_so_far() -> None:
    judged = []

    def judge(case: Case) -> CaseVerdict:
        judged.append(case)
        return verdict_for(case, "graph_break")

    result = shrink(judge, verdict_for(TRAIN, "graph_break"), budget=0.0)
    assert result.stopped_at_budget and result.verdict.case == TRAIN and not judged
    assert dataclasses.asdict(result.verdict.findings[0])["check"] == "graph_break"


def test_a_failure_with_no_finding_and_no_failed_check_still_shrinks() -> None:
    """A side that raises is a refused class (`model: raised`), with no finding and no failed tensor check; it is
    still a signature, so the shrink pass takes the simpler candidates that raise alike (it took none before)."""

    def raised(case: Case) -> CaseVerdict:
        return CaseVerdict(case, classes={"model": PairClass("model", "raised", "boom", accepted=False)})

    result = shrink(raised, raised(TRAIN), budget=30.0)
    assert result.steps > 0 and result.verdict.case != TRAIN
    assert not result.verdict.case.training and result.verdict.case.batch.batch_size == 1


def test_shrink_drives_sizes_and_the_kl_weight_to_their_simplest_failing_values() -> None:
    """A failure needing latent_dim >= 2 ends at 2 (1 passes, so halving finds it), and a kl_weight it does not need
    ends at 1."""
    case = dataclasses.replace(TRAIN, config=TRAIN.config.replace(use_vae=True, latent_dim=8, kl_weight=10.0))

    def judge(candidate: Case) -> CaseVerdict:
        needed = candidate.config.use_vae and candidate.config.latent_dim >= 2
        return verdict_for(candidate, "graph_break" if needed else None)

    best = shrink(judge, verdict_for(case, "graph_break"), budget=60).verdict.case
    assert best.config.latent_dim == 2 and best.config.kl_weight == 1.0
    assert "kl=" not in best.describe()
