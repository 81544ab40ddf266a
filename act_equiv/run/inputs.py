"""What a side is given: the case's batch at a size (`batch_at`), a batch of its own (a copy, or a cast), and the
check that a call left it as it was.

A side never computes on the caller's tensors: each call gets a copy (`copy_batch`), and afterwards the copy must
still hold the caller's values (`check_unchanged`), else the call wrote into its input (an `InputMutatedError`).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from act_equiv.case import BatchSpec, Case, make_batch
from act_equiv.config import ACTConfig
from act_equiv.errors import InputMutatedError
from act_equiv.run.numerics import DTYPES
from act_equiv.settings import Settings

__all__ = ["batch_at", "cast_batch", "check_unchanged", "copy_batch", "same_bits"]


def batch_at(settings: Settings, case: Case, size: int) -> dict[str, Any]:
    """The case's batch at `size` on the settings' device and dtype: the same tensors in every process that makes
    it. A copy of one of the last batches made (`_made`): a case asks for the same batch at every level, on both
    sides, and drawing it costs fifty times the copy."""
    return copy_batch(_made(case.config.to_json(), case.batch.with_batch_size(size), settings.device,
                            settings.dtype))


@functools.lru_cache(maxsize=16)
def _made(config: str, spec: BatchSpec, device: str, dtype: str) -> dict[str, Any]:
    return make_batch(ACTConfig.from_json(config), spec, device, DTYPES[dtype])


def copy_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """A batch of fresh tensors with the same values: what a side is given, so that the caller's stays pristine."""
    return {key: [v.clone() for v in value] if isinstance(value, list) else
            value.clone() if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors are the same bits: shape, dtype and values (NaN equal to NaN; `torch.equal` first, the
    common case in one op, though it finds NaN unequal to itself)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return torch.equal(a, b) or bool(((a == b) | (a.isnan() & b.isnan())).all())


def check_unchanged(pristine: dict[str, Any], given: dict[str, Any], where: str) -> None:
    """Raise `InputMutatedError` naming each key whose tensors a call changed in place (NaN equal to NaN)."""
    def same(a: Any, b: Any) -> bool:
        if isinstance(a, list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        return not isinstance(a, torch.Tensor) or same_bits(a, b)

    changed = [key for key, value in pristine.items() if key in given and not same(value, given[key])]
    if changed:
        raise InputMutatedError(changed, where)


def cast_batch(batch: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    """The same batch cast to `dtype` (bool masks untouched)."""

    def cast(value: Any) -> Any:
        if isinstance(value, list):
            return [cast(v) for v in value]
        return value.to(dtype) if value.is_floating_point() else value

    return {key: cast(value) for key, value in batch.items()}
