"""What the tests share: a gate around a target object, one case's verdict, and what a failing verdict says.

A gate here compares the target with the legacy reference (or `reference`), skips the `explain` trace (reported,
never judged) and compiles no training (`trained_structures=0`; test_training.py asks for it) unless told otherwise.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from act_equiv.case import MUST_KEEP, Case
from act_equiv.gate import Gate, SideSpec
from act_equiv.oracle.verdict import CaseVerdict

__all__ = ["TRAIN_WITHOUT_CAMERAS", "failures", "gate", "verdict", "without_cameras"]


def without_cameras(case: Case) -> Case:
    """`case` without its cameras, for tests of what a step, a transport or an edit away from the cameras does rather
    than what the backbones compute: the backbones hold most of the parameters, and a compile or export costs by
    them."""
    return dataclasses.replace(case, config=case.config.replace(camera_shapes=[]))


TRAIN_WITHOUT_CAMERAS = without_cameras(MUST_KEEP[1])
"""`MUST_KEEP`'s training case without its cameras."""


def gate(target: SideSpec, reference: SideSpec | None = None, **options: Any) -> Gate:
    """A gate of `target` (a model class or factory, a `Target` or a spec) against `reference` (default: legacy)."""
    sides = {"target": target, **({"reference": reference} if reference is not None else {})}
    return Gate(**sides, **{"explain": False, "trained_structures": 0, **options})


def verdict(target: SideSpec, case: Case, reference: SideSpec | None = None, compiled: bool = True,
            **options: Any) -> CaseVerdict:
    """The verdict on one case of `gate(target, reference, **options)`, its sides closed afterwards."""
    with gate(target, reference, **options) as opened:
        return opened.verdict(case, compiled)


def failures(found: CaseVerdict) -> dict[str, str]:
    """A failing verdict's findings, failed tensor checks (`pair:tensor`) and refused classes (`class:level`), each
    with its message; fails the test when the verdict passed (the injected bug was not caught)."""
    assert not found.passed, "the injected bug was not caught"
    return {f.check: f.message for f in found.findings} | {
        f"{c.pair}:{c.tensor}": c.message for c in found.checks if not c.passed} | {
        f"class:{c.level}": c.name for c in found.classes.values() if not c.accepted}
