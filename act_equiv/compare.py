"""The comparison engine: named tensors of two forms in, one `TensorCheck` per tensor out.

Modelled on torch.testing's: per-tensor comparison producing an error record, one tolerance per call, and
one message builder (greatest absolute/relative difference and where), so every mismatch reads alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from act_equiv.tolerance import Tolerance
from act_equiv.verdict import TensorCheck

Outputs = Mapping[str, "torch.Tensor | None"]


def compare(
    expected: Outputs,
    actual: Outputs,
    pair: str,
    tolerance: Tolerance,
    reference64: Outputs | None = None,
) -> list[TensorCheck]:
    """Compare every tensor named in either mapping; `reference64` enables the fp64-referenced check."""
    checks = []
    for name in sorted(set(expected) | set(actual)):
        exp, act = expected.get(name), actual.get(name)
        ref = None if reference64 is None else reference64.get(name)
        checks.append(_compare_tensor(pair, name, exp, act, tolerance, ref))
    return checks


def _compare_tensor(
    pair: str,
    name: str,
    expected: torch.Tensor | None,
    actual: torch.Tensor | None,
    tolerance: Tolerance,
    reference64: torch.Tensor | None,
) -> TensorCheck:
    def fail(kind: str, message: str) -> TensorCheck:
        return TensorCheck(pair, name, False, kind, tolerance, ratio=math.inf, message=f"{name}: {message}")

    if expected is None and actual is None:
        return TensorCheck(pair, name, True, "close", tolerance, message=f"{name}: both None")
    if expected is None or actual is None:
        missing = "expected" if expected is None else "actual"
        return fail("missing", f"the {missing} side has no tensor (None) where the other has one")
    if expected.shape != actual.shape:
        return fail("shape", f"shapes differ: expected {tuple(expected.shape)}, actual {tuple(actual.shape)}")
    if expected.dtype != actual.dtype:
        return fail("dtype", f"dtypes differ: expected {expected.dtype}, actual {actual.dtype}")
    exp = expected.detach().to("cpu", torch.float64)
    act = actual.detach().to("cpu", torch.float64)
    exp_nan, act_nan = exp.isnan(), act.isnan()
    if not torch.equal(exp_nan, act_nan):
        where = _index(exp_nan != act_nan)
        return fail("nan", f"NaN in one form only, first at index {where} "
                           f"(expected {exp[where].item()}, actual {act[where].item()})")
    exp, act = exp.masked_fill(exp_nan, 0), act.masked_fill(act_nan, 0)
    same_inf = (exp == act) & exp.isinf()
    abs_diff = (act - exp).abs().masked_fill(same_inf, 0)
    rel_diff = abs_diff / exp.abs()
    rel_diff = rel_diff.masked_fill(abs_diff == 0, 0)
    allowed = tolerance.atol + tolerance.rtol * exp.abs()
    bad = abs_diff > allowed
    ratio = _ratio(abs_diff, allowed)
    check = TensorCheck(
        pair,
        name,
        passed=not bool(bad.any()),
        kind="close",
        tolerance=tolerance,
        max_abs=float(abs_diff.max()) if abs_diff.numel() else 0.0,
        max_rel=float(rel_diff.max()) if rel_diff.numel() else 0.0,
        where=_index(abs_diff == abs_diff.max()) if abs_diff.numel() else None,
        mismatched=int(bad.sum()),
        numel=abs_diff.numel(),
        ratio=ratio,
    )
    if not check.passed and tolerance.rmse_factor is not None and reference64 is not None:
        check.rmse = _rmse_check(exp, act, reference64, tolerance)
        check.passed = check.rmse["compiled"] <= check.rmse["bound"]
    if not check.passed:
        check.kind = "mismatch"
    check.message = _message(name, check, rel_diff)
    return check


def _ratio(abs_diff: torch.Tensor, allowed: torch.Tensor) -> float:
    if not abs_diff.numel() or not bool((abs_diff > 0).any()):
        return 0.0
    if bool(((abs_diff > 0) & (allowed == 0)).any()):
        return math.inf
    return float((abs_diff / allowed).max())


def _rmse_check(eager: torch.Tensor, compiled: torch.Tensor, reference64: torch.Tensor, tol: Tolerance) -> dict:
    """PyTorch's dynamo accuracy rule: the compiled error vs fp64 may be at most k x the eager error."""
    ref = reference64.detach().to("cpu", torch.float64)

    def rmse(x: torch.Tensor) -> float:
        return float(((x - ref) ** 2).mean().sqrt()) if x.numel() else 0.0

    eager_rmse, compiled_rmse = rmse(eager), rmse(compiled)
    return {"compiled": compiled_rmse, "eager": eager_rmse, "bound": tol.rmse_factor * eager_rmse + tol.atol / 10}


def _index(mask: torch.Tensor) -> tuple[int, ...]:
    flat = int(mask.flatten().nonzero()[0]) if bool(mask.any()) else 0
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), mask.shape)) if mask.dim() else ()


def _message(name: str, check: TensorCheck, rel_diff: torch.Tensor) -> str:
    """assert_close-style text: how many differ, greatest absolute and relative difference, and where."""
    tol = check.tolerance
    if check.max_abs == 0:
        return f"{name}: bitwise equal"
    rel_where = _index(rel_diff == rel_diff.max())
    verdict = "close" if check.passed else "not close"
    lines = [
        f"{name}: tensors are {verdict} ({tol.describe()})",
        f"  Mismatched elements: {check.mismatched} / {check.numel} ({100 * check.mismatched / check.numel:.1f}%)",
        f"  Greatest absolute difference: {check.max_abs:.3g} at index {check.where}"
        + ("" if tol.bitwise else f" (up to {tol.atol:g} allowed)"),
        f"  Greatest relative difference: {check.max_rel:.3g} at index {rel_where}"
        + ("" if tol.bitwise else f" (up to {tol.rtol:g} allowed)"),
    ]
    if check.rmse is not None:
        r = check.rmse
        lines.append(
            f"  fp64-referenced: compiled rmse {r['compiled']:.3g} vs eager rmse {r['eager']:.3g}"
            f" (bound {r['bound']:.3g}) -> {'rounding' if check.passed else 'miscompile'}"
        )
    return "\n".join(lines)
