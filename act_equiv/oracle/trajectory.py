"""Training trajectories step by step: where a pair leaves bitwise, where it leaves rounding, and the rounding beside
the float64 envelope it grew within.

The pairs are `act_equiv.oracle.judge.LEVELS`' trajectory levels, classed there like the model level: reference/
target (each side's own training), and the target's compiled trajectories against its eager one (model compiled;
whole step compiled). Rounding grows over optimizer steps: AdamW divides each moment by the root of its second
moment, so a gradient's last bits can move a parameter by a good part of the learning rate, and the next step's
gradients move with the parameters as steeply as the loss is. So no percentage can tell rounding from change, and
which of two honest float32 runs ends closer to float64 is chance. The evidence: both sides' trajectories again in
float64 with the float32 runs' random draws must agree to float64 rounding at every step (a change shows there
from the step it starts), and at the first step, before anything compounded, the actual side's float32 must be
within the expected side's own float32 envelope (`trajectory_envelope`; a float32-only path).

Each class carries per step (this module): the pair's greatest |diff| and |diff| relative to the tensor's scale, the
envelope (the expected side's float32 against its float64 run), the step's class, and where a pair diverges, from
which step and on which tensor. Dropout is replayed (the same masks and VAE draws on both sides every step); where
the reference/target pair differs, both sides trained again with dropout off, which says whether it needs dropout.
"""

from __future__ import annotations

from typing import Any

import torch

from act_equiv.oracle.compare import compare
from act_equiv.oracle.tolerance import EXACT
from act_equiv.oracle.verdict import CaseVerdict, TensorCheck
from act_equiv.run.records import CaseRun, Outputs
from act_equiv.run.training import step_of

__all__ = ["condense", "first_step", "floors", "judge_trajectories", "steps"]


def judge_trajectories(run: CaseRun, verdict: CaseVerdict) -> None:
    """The steps of each trajectory pair's class (the classes come from `act_equiv.oracle.judge.LEVELS`): per step
    the pair's difference beside the envelope and the step's class, where the pair leaves rounding, and whether a
    difference needs dropout."""
    outputs = run.outputs
    for level, pair_class in verdict.classes.items():
        if not level.startswith("trajectory") or pair_class.name not in ("bitwise", "rounding", "divergent"):
            continue
        expected, actual = ("reference", "target") if level == "trajectory" else ("target", level.split()[1])
        rows = steps(outputs[f"{expected}_trajectory"], outputs[f"{actual}_trajectory"],
                     outputs.get(f"{expected}_trajectory64"),
                     [check for check in verdict.checks if check.pair in pair_class.pairs])
        pair_class.detail.update(steps=rows, dropout=_dropout(run, pair_class.name) if level == "trajectory" else
                                 "replayed: the same masks and VAE draws on both sides")
        pair_class.evidence += _from_step(pair_class.name, rows)
        info = run.trained.get(actual, {})
        if info.get("graphs_per_step"):
            pair_class.evidence += f"; compiled graphs per step {info['graphs_per_step']}"


def condense(checks: list[TensorCheck]) -> list[TensorCheck]:
    """Per pair and step the worst check (a failed one first): a trajectory holds hundreds of tensors a step, and the
    class already says what they show."""
    worst: dict[tuple[str, int], TensorCheck] = {}
    for check in checks:
        key = (check.pair, step_of(check.tensor))
        if key not in worst or _rank(check) > _rank(worst[key]):
            worst[key] = check
    return list(worst.values())


def floors(expected: Outputs, expected64: Outputs) -> dict[str, float]:
    """The yardstick a step's parameters share: the greatest deviation of any of them from float64. AdamW divides
    each element's moment by the root of its second moment (plus eps 1e-8), so where an element's gradient is a
    cancellation residue near eps, the last bits of the gradient move the update by a good part of the learning
    rate: in whichever element of whichever tensor the residue falls, in one float32 run as in another. Applied at
    the first step only (`first_step`); no measurement here shows a case it decides."""
    worst: dict[int, float] = {}
    for name, value in expected.items():
        if "/param/" in name and name in expected64 and value.numel():
            step = step_of(name)
            deviation = float((value.double() - expected64[name].double()).abs().nan_to_num(nan=0.0).max())
            worst[step] = max(worst.get(step, 0.0), deviation)
    return {name: worst.get(step_of(name), 0.0) for name in expected if "/param/" in name}


def first_step(outputs: Outputs) -> Outputs:
    """A trajectory's first step: the one no earlier step's rounding reached."""
    return {name: value for name, value in outputs.items() if step_of(name) == 1}


def _rank(check: TensorCheck) -> tuple[bool, float]:
    return not check.passed, check.ratio


def steps(expected: Outputs, actual: Outputs, expected64: Outputs | None,
           checks: list[TensorCheck]) -> list[dict[str, Any]]:
    """Per step: greatest |diff| of the pair and relative to the tensor's scale (its greatest |expected|), the
    envelope (`expected` against its float64 run, the same two measures), and the step's class from `checks` (the
    exact pair first, then any evidence pair: bitwise, rounding or divergent)."""
    rows: dict[int, dict[str, Any]] = {}
    for name, value in expected.items():
        other = actual.get(name)
        row = rows.setdefault(step_of(name), {"step": step_of(name), "max_abs": 0.0, "max_rel": 0.0})
        if other is None or other.shape != value.shape:
            continue
        _fold(row, "", name, value, other)
        if expected64 is not None and name in expected64:
            _fold(row, "envelope_", name, expected64[name], value)
    by_step: dict[int, dict[str, bool]] = {}
    for check in checks:
        exact = check.tolerance.bitwise
        seen = by_step.setdefault(step_of(check.tensor), {"exact": True, "evidence": True})
        seen["exact" if exact else "evidence"] &= check.passed
    for step, row in rows.items():
        seen = by_step.get(step, {"exact": True, "evidence": True})
        row["class"] = "bitwise" if seen["exact"] else "rounding" if seen["evidence"] else "divergent"
    return [rows[step] for step in sorted(rows)]


def _fold(row: dict[str, Any], prefix: str, name: str, expected: torch.Tensor, actual: torch.Tensor) -> None:
    """Fold one tensor's |actual - expected| into a step's row, keeping the worst tensor's name (NaN: infinite)."""
    row.setdefault(f"{prefix}max_abs", 0.0)
    row.setdefault(f"{prefix}max_rel", 0.0)
    if expected.dtype == actual.dtype and torch.equal(expected, actual):
        return  # no difference (a NaN is never equal, so it takes the measuring path)
    expected, actual = expected.double(), actual.double()
    diff = (actual - expected).abs().nan_to_num(nan=float("inf"))
    worst = float(diff.max()) if diff.numel() else 0.0
    scale = float(expected.abs().nan_to_num(nan=0.0, posinf=0.0).max()) if expected.numel() else 0.0
    if worst > row[f"{prefix}max_abs"]:
        row[f"{prefix}max_abs"], row[f"{prefix}tensor"] = worst, name
    if worst:
        row[f"{prefix}max_rel"] = max(row[f"{prefix}max_rel"], worst / scale if scale else float("inf"))


def _from_step(name: str, steps: list[dict[str, Any]]) -> str:
    """Where a pair leaves bitwise (rounding) or rounding (divergent): "; divergent from step N on T (...)"."""
    wanted = "divergent" if name == "divergent" else "rounding"
    first = next((row for row in steps if row["class"] == wanted), None)
    if first is None or name == "bitwise":
        return ""
    envelope = f", envelope {first['envelope_max_abs']:.3g}" if "envelope_max_abs" in first else ""
    tensor = f" on {first['tensor']}" if "tensor" in first else ""
    return (f"; {'divergent' if name == 'divergent' else 'not bitwise'} from step {first['step']}{tensor} "
            f"(max |diff| {first['max_abs']:.3g}{envelope})")


def _dropout(run: CaseRun, name: str) -> str:
    """Whether a difference between the sides' trajectories needs dropout (see the module docstring)."""
    if name == "bitwise":
        return "replayed: the same masks and VAE draws on both sides"
    if not run.case.config.dropout:
        return "none in this config: the difference is not dropout's"
    reference, target = (run.outputs.get(f"{role}_trajectory_nodropout") for role in ("reference", "target"))
    if reference is None or target is None:
        return "replayed; no run with dropout off"
    failed = [check for check in compare(reference, target, "dropout off", EXACT) if not check.passed]
    if not failed:
        return ("replayed; with dropout off both sides train bit for bit alike: the difference needs dropout (how "
                "it draws or applies its masks), though with the same random numbers on both sides")
    worst = max(failed, key=lambda check: check.max_abs)
    return (f"replayed; with dropout off the sides still differ (max |diff| {worst.max_abs:.3g} on {worst.tensor}): "
            "the difference is not dropout's")
