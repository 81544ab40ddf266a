"""The comparison engine: named tensors of two forms in, one `TensorCheck` per tensor out.

Modelled on torch.testing's: per-tensor comparison producing an error record, one tolerance per tensor, and
one message builder (greatest absolute/relative difference and where), so every mismatch reads alike.

Non-finite values are compared by identity (the same infinity, NaN only against NaN), never by a tolerance:
an infinite expected value would make `atol + rtol * |expected|` infinite and accept anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from act_equiv.oracle.tolerance import Tolerance
from act_equiv.oracle.verdict import TensorCheck

Outputs = Mapping[str, "torch.Tensor | None"]


def compare(
    expected: Outputs,
    actual: Outputs,
    pair: str,
    tolerance: Tolerance | Callable[[str], Tolerance],
    reference64: Outputs | None = None,
    form: str | None = None,
    roles: tuple[str, str] = ("compiled", "eager"),
    floors: Mapping[str, float] | None = None,
) -> list[TensorCheck]:
    """Compare every tensor named in either mapping, each against `tolerance` or `tolerance(name)`;
    `reference64` enables the fp64-referenced check where the tolerance has one. `form` names the target's form
    (`act_equiv.forms`) that `actual` came from, where it is one; `roles` name actual and expected in the
    fp64-referenced check's message. `floors`: per tensor, a least value for expected's worst error in the
    per-element rule (tensors that share one yardstick: a training step's parameters)."""
    checks = []
    for name in sorted(set(expected) | set(actual)):
        exp, act = expected.get(name), actual.get(name)
        ref = None if reference64 is None else reference64.get(name)
        tol = tolerance(name) if callable(tolerance) else tolerance
        check = _compare_tensor(pair, name, exp, act, tol, ref, roles, (floors or {}).get(name, 0.0))
        check.form = form
        checks.append(check)
    return checks


def non_finite(outputs: Outputs) -> dict[str, dict]:
    """The tensors holding NaN or inf: name -> {"nan": count, "inf": count, "where": first index}. A reference
    that is not finite cannot judge anything (NaN matches NaN), so the oracle reports it on its own."""
    found = {}
    for name, tensor in outputs.items():
        if tensor is None:
            continue
        bad = ~tensor.detach().isfinite()
        if bool(bad.any()):
            found[name] = {"nan": int(tensor.isnan().sum()), "inf": int(tensor.isinf().sum()), "where": _index(bad)}
    return found


def _compare_tensor(
    pair: str,
    name: str,
    expected: torch.Tensor | None,
    actual: torch.Tensor | None,
    tolerance: Tolerance,
    reference64: torch.Tensor | None,
    roles: tuple[str, str],
    floor: float = 0.0,
) -> TensorCheck:
    def fail(kind: str, message: str, **found: Any) -> TensorCheck:
        return TensorCheck(pair, name, False, kind, tolerance, ratio=math.inf, message=f"{name}: {message}", **found)

    if expected is None and actual is None:
        return TensorCheck(pair, name, True, "close", tolerance, message=f"{name}: both None")
    if expected is None or actual is None:
        missing = "expected" if expected is None else "actual"
        return fail("missing", f"the {missing} side has no tensor (None) where the other has one")
    if expected.shape != actual.shape:
        return fail("shape", f"shapes differ: expected {tuple(expected.shape)}, actual {tuple(actual.shape)}")
    if expected.dtype != actual.dtype:
        return fail("dtype", f"dtypes differ: expected {expected.dtype}, actual {actual.dtype}")
    if torch.equal(expected, actual):  # the same bits (no NaN: torch.equal finds NaN unequal to itself)
        where = (0,) * expected.dim() if expected.numel() else None
        return TensorCheck(pair, name, True, "close", tolerance, where=where, numel=expected.numel(),
                           message=f"{name}: bitwise equal")
    exp = expected.detach().to("cpu", torch.float64)
    act = actual.detach().to("cpu", torch.float64)
    finite = exp.isfinite() & act.isfinite()
    if not bool(finite.all()):
        differ = ~finite & ~((exp == act) | (exp.isnan() & act.isnan()))
        if bool(differ.any()):
            where = _index(differ)
            e, a = exp[where].item(), act[where].item()
            # No size for such a difference: its greatest absolute difference is infinite, never 0.
            return fail("nan" if math.isnan(e) or math.isnan(a) else "inf",
                        f"non-finite values differ at {int(differ.sum())} element(s), first at index {where} "
                        f"(expected {e}, actual {a}): NaN must meet NaN, an infinity the same infinity",
                        max_abs=math.inf, max_rel=math.inf, where=where, mismatched=int(differ.sum()),
                        numel=exp.numel())
        # Identical non-finite elements are equal; differences and allowances are over the elements finite in both.
        exp, act = exp.where(finite, 0), act.where(finite, 0)
    abs_diff = (act - exp).abs()
    magnitude = exp.abs()
    rel_diff = (abs_diff / magnitude).masked_fill(abs_diff == 0, 0)
    allowed = tolerance.atol + tolerance.rtol * magnitude
    mismatched = int((abs_diff > allowed).sum())
    check = TensorCheck(
        pair,
        name,
        passed=mismatched == 0,
        kind="close",
        tolerance=tolerance,
        max_abs=float(abs_diff.max()) if abs_diff.numel() else 0.0,
        max_rel=float(rel_diff.max()) if rel_diff.numel() else 0.0,
        where=_greatest(abs_diff) if abs_diff.numel() else None,
        mismatched=mismatched,
        numel=abs_diff.numel(),
        ratio=_ratio(abs_diff, allowed),
    )
    multiplier = tolerance.rmse_multiplier(expected.dtype, expected.numel())
    if not check.passed and multiplier is not None and reference64 is not None:
        ref = reference64.detach().to("cpu", torch.float64).where(finite, 0)
        check.rmse = _fp64_check(exp, act, ref, finite, tolerance, multiplier, floor)
        check.passed = ((check.rmse["compiled"] <= check.rmse["bound"] or not tolerance.mean_rule)
                        and check.rmse["local_mismatched"] == 0)
    if not check.passed:
        check.kind = "mismatch"
    check.message = _message(name, check, rel_diff, roles)
    return check


def _ratio(abs_diff: torch.Tensor, allowed: torch.Tensor) -> float:
    """The greatest |diff| over its allowance: infinite where a difference has none, and an equal element with none
    (0 / 0) uses none of it."""
    if not abs_diff.numel() or not bool((abs_diff > 0).any()):
        return 0.0
    return float((abs_diff / allowed).nan_to_num(nan=0.0, posinf=math.inf).max())


def _fp64_check(eager: torch.Tensor, compiled: torch.Tensor, ref: torch.Tensor, finite: torch.Tensor,
                tol: Tolerance, k: float, floor: float = 0.0) -> dict[str, Any]:
    """Is the compiled result no further from the exact (float64) answer than eager's own rounding allows?

    Two rules over the elements finite in both forms; both must hold. dynamo's (`torch._dynamo.utils.same`):
    rmse(compiled) <= k * rmse(eager) + atol / 10. A mean averages one bad element away in a large tensor, so also
    per element: |compiled - ref| <= k * max|eager - ref| + atol + rtol * |ref|, eager's worst error being the
    max-norm counterpart of dynamo's rmse. Not eager's error at that same element: that is itself noise, near 0 by
    chance at some elements, and so rejected real half-precision rounding (docs/TORCH_COMPILE_ACT.md). Where the
    element-wise bound holds the per-element rule does too (k >= 1 + rtol): it judges only elements over it.
    """
    eager_err, compiled_err = (eager - ref).abs(), (compiled - ref).abs()  # 0 where not finite in both forms
    eager_worst = max(float(eager_err.max()) if eager_err.numel() else 0.0, floor)

    def rmse(err: torch.Tensor) -> float:
        return float(err[finite].square().mean().sqrt()) if bool(finite.any()) else 0.0

    local = compiled_err / (k * eager_worst + tol.atol + tol.rtol * ref.abs())
    over = ~(local <= 1)  # NaN (a non-finite float64 reference) counts as over: nothing vouches for the element
    worst = local.nan_to_num(nan=math.inf)
    eager_rmse = rmse(eager_err)
    return {
        "compiled": rmse(compiled_err),
        "eager": eager_rmse,
        "multiplier": k,
        "bound": k * eager_rmse + tol.atol / 10,
        "eager_max": eager_worst,
        "local_ratio": float(worst.max()) if worst.numel() else 0.0,
        "local_mismatched": int(over.sum()),
        "local_where": (_index(over) if bool(over.any()) else _greatest(worst)) if worst.numel() else (),
    }


def _index(mask: torch.Tensor) -> tuple[int, ...]:
    """Where `mask`'s first true element is (the first element where none is)."""
    return _unravel(int(mask.flatten().to(torch.uint8).argmax()), mask.shape)


def _greatest(values: torch.Tensor) -> tuple[int, ...]:
    """Where `values`' first greatest element is (`argmax` returns the first; `values` hold no NaN)."""
    return _unravel(int(values.flatten().argmax()), values.shape)


def _unravel(flat: int, shape: torch.Size) -> tuple[int, ...]:
    """A flat index as an index into `shape` (in Python: `torch.unravel_index` costs more than the comparison)."""
    index = []
    for size in reversed(shape):
        flat, i = divmod(flat, size)
        index.append(i)
    return tuple(reversed(index))


def _message(name: str, check: TensorCheck, rel_diff: torch.Tensor, roles: tuple[str, str]) -> str:
    """assert_close-style text: how many differ, greatest absolute and relative difference, and where."""
    tol = check.tolerance
    if check.max_abs == 0:
        return f"{name}: bitwise equal"
    rel_where = _greatest(rel_diff)
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
        rmse_ok, local_ok = r["compiled"] <= r["bound"] or not tol.mean_rule, r["local_mismatched"] == 0
        actual, expected = roles
        failed = " and ".join(name for name, ok in (("rmse", rmse_ok), ("per-element", local_ok)) if not ok)
        lines += [
            f"  fp64-referenced rmse: {actual} {r['compiled']:.3g} vs {expected} {r['eager']:.3g} (bound"
            f" {r['multiplier']:g} x {expected} + atol/10 = {r['bound']:.3g}) -> "
            + ("not judged (the envelope's per-element rule decides)" if not tol.mean_rule else
               "ok" if rmse_ok else "FAILED"),
            f"  fp64-referenced per element: |{actual} - fp64| <= {r['multiplier']:g} x {expected}'s worst"
            f" ({r['eager_max']:.3g}) + atol + rtol*|fp64|: {r['local_mismatched']} element(s) over, worst"
            f" {r['local_ratio']:.3g}x the allowance at index {r['local_where']} -> {'ok' if local_ok else 'FAILED'}",
            "  -> rounding" if check.passed else
            f"  -> {'miscompile' if actual == 'compiled' else 'not rounding'} ({failed} rule failed)",
        ]
    return "\n".join(lines)
