"""The comparison engine's loopholes, each shown closed: every test injects a difference the engine must catch
(and says what the engine did before the fix), or a legitimate rounding it must still accept."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from act_equiv.oracle.compare import compare, non_finite
from act_equiv.oracle.tolerance import EAGER_ROUNDING, EXACT, Tolerance, tolerance_for
from act_equiv.oracle.verdict import TensorCheck

INF, NAN = math.inf, math.nan
INDUCTOR_FP32 = tolerance_for("compiled", torch.float32, "inductor")
DOC = Path(__file__).resolve().parents[1] / "docs" / "TORCH_COMPILE_ACT.md"


def check(expected: torch.Tensor | None, actual: torch.Tensor | None, tolerance: Tolerance = EXACT,
          reference64: torch.Tensor | None = None) -> TensorCheck:
    ref = None if reference64 is None else {"t": reference64}
    return compare({"t": expected}, {"t": actual}, "p", tolerance, ref)[0]


def fp64_triple(numel: int, eager_error: float, compiled_factor: float) -> tuple[torch.Tensor, ...]:
    """A float64 reference, an eager float32 result `eager_error` (times 0.5-1.5, random sign) away from it, and a
    compiled one `compiled_factor` x eager's error away on the other side (so compiled and eager disagree by
    (1 + compiled_factor) x eager's error: over the element-wise bound, for the fp64 check to judge)."""
    g = torch.Generator().manual_seed(numel)
    ref = torch.randn(numel, generator=g, dtype=torch.float64)
    error = eager_error * (0.5 + torch.rand(numel, generator=g, dtype=torch.float64))
    error = error * torch.where(torch.rand(numel, generator=g) < 0.5, -1.0, 1.0).double()
    return ref, (ref + error).float(), (ref - compiled_factor * error).float()


# -- kept behaviour ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [[0.0, -1.5, 3e38], [INF, -INF, 2.0], [NAN, 1.0, INF]])
def test_identical_tensors_pass_bitwise_non_finite_included(values: list[float]) -> None:
    same = check(torch.tensor(values), torch.tensor(values))
    assert same.passed and same.kind == "close" and same.max_abs == 0 and "bitwise equal" in same.message


@pytest.mark.parametrize(
    ("actual", "kind"),
    [(torch.zeros(2, 3), "shape"), (torch.zeros(3, 2, dtype=torch.float64), "dtype"), (None, "missing")],
)
def test_structural_mismatches_keep_their_kind(actual: torch.Tensor | None, kind: str) -> None:
    structural = check(torch.zeros(3, 2), actual)
    assert not structural.passed and structural.kind == kind and math.isinf(structural.ratio)


def test_both_none_is_equal() -> None:
    assert check(None, None).passed


def test_identical_infinities_do_not_hide_a_finite_difference() -> None:
    """The finite elements are judged on their own: the shared inf neither fails the tensor nor widens anything."""
    tol = EAGER_ROUNDING[torch.float32]
    found = check(torch.tensor([INF, 1.0]), torch.tensor([INF, 1.001]), tol)
    assert not found.passed and found.kind == "mismatch" and found.where == (1,)
    assert found.max_abs == pytest.approx(1e-3, rel=1e-3) and found.mismatched == 1


def test_an_exact_zero_under_a_relative_tolerance_leaves_the_ratio_finite() -> None:
    """Old code: the ratio (|diff| over the allowance, and so the report's margin) was NaN where an expected 0 met
    an actual 0 with no absolute allowance (0 / 0), and NaN is greater than nothing: a close tensor's margin read
    -inf and ranked as the worst. The element uses none of its allowance."""
    tol = Tolerance(rtol=1e-3, atol=0.0)
    found = check(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0.0, 1.0005, 2.0]), tol)
    assert found.passed and found.ratio == pytest.approx(0.5, rel=1e-3) and found.margin == pytest.approx(0.5, rel=1e-2)
    over = check(torch.tensor([0.0, 1.0]), torch.tensor([1e-9, 1.0]), tol)
    assert not over.passed and math.isinf(over.ratio) and over.where == (0,)


# -- 1. non-finite values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tolerance", [EXACT, EAGER_ROUNDING[torch.float32], INDUCTOR_FP32],
                         ids=["bitwise", "eager_rounding", "inductor"])
def test_infinite_expected_does_not_accept_a_finite_actual(tolerance: Tolerance) -> None:
    """Old code: passed. The allowance atol + rtol * |inf| was inf (NaN under bitwise, 0 * inf, and `x > NaN` is
    False), so any actual value was within it."""
    found = check(torch.tensor([1.0, INF]), torch.tensor([1.0, 1.0]), tolerance)
    assert not found.passed and found.kind == "inf" and math.isinf(found.ratio)
    assert "first at index (1,)" in found.message and "expected inf, actual 1.0" in found.message


def test_infinity_of_the_other_sign_fails_bitwise() -> None:
    """Old code: passed bitwise (|-inf - inf| = inf against an allowance of 0 * inf = NaN)."""
    found = check(torch.tensor([[2.0, INF]]), torch.tensor([[2.0, -INF]]))
    assert not found.passed and found.kind == "inf" and "index (0, 1)" in found.message
    assert "expected inf, actual -inf" in found.message


@pytest.mark.parametrize(("expected", "actual"), [([1.0, NAN], [1.0, 2.0]), ([1.0, 2.0], [1.0, NAN]),
                                                  ([NAN], [INF]), ([-INF], [NAN])])
def test_nan_in_one_form_only_fails(expected: list[float], actual: list[float]) -> None:
    """Caught before the fix too (kind "nan"); kept, and the message names the index and both values."""
    found = check(torch.tensor(expected), torch.tensor(actual), INDUCTOR_FP32)
    assert not found.passed and found.kind == "nan" and "nan" in found.message


def test_nan_in_both_forms_is_reported_by_non_finite() -> None:
    """Old code: NaN matched NaN and nothing said so; a reference that is NaN judges nothing. compare still calls
    identical NaN equal (both forms computed the same thing); `non_finite` names it for the oracle."""
    expected = {"actions": torch.tensor([[0.5, NAN], [1.0, 2.0]]), "mu": torch.tensor([INF, -INF, NAN]),
                "loss": torch.tensor(0.25), "log_sigma_x2": None}
    assert check(expected["actions"], expected["actions"].clone()).passed
    assert non_finite(expected) == {"actions": {"nan": 1, "inf": 0, "where": (0, 1)},
                                    "mu": {"nan": 1, "inf": 2, "where": (0,)}}
    assert non_finite({"loss": torch.tensor(0.25)}) == {}


# -- 2. the fp64-referenced check: a local error cannot hide in the mean ------------------------------------------


def test_one_bad_element_in_a_large_tensor_fails_the_fp64_check() -> None:
    """Old code: passed. Compiled rmse over 36,864 elements was 5.2e-7 against a bound of 1.05e-6 (2 x eager's
    2.5e-8 + atol / 10): one element off by 10 x atol averaged away."""
    ref = torch.randn(4, 9216, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eager = ref.float()  # nearly exact: float32 rounding of the exact answer
    compiled = eager.clone()
    compiled[2, 5000] += 10 * INDUCTOR_FP32.atol
    found = check(eager, compiled, INDUCTOR_FP32, ref)
    assert not found.passed and found.kind == "mismatch" and found.rmse is not None
    assert found.rmse["compiled"] <= found.rmse["bound"], "the rmse rule alone would have passed it"
    assert found.rmse["local_mismatched"] == 1 and found.rmse["local_where"] == (2, 5000)
    assert found.rmse["local_ratio"] > 8  # about 9x its allowance
    assert "miscompile (per-element rule failed)" in found.message and "at index (2, 5000)" in found.message


def test_compiled_error_uniformly_1_5x_eagers_is_rounding() -> None:
    """Legitimate reordering: compiled is 1.5x as far from float64 as eager everywhere, on the other side, so the
    element-wise bound fails; both fp64 rules accept it (the fix must not reject rounding)."""
    ref, eager, compiled = fp64_triple(4 * 9216, 1e-5, 1.5)
    found = check(eager, compiled, INDUCTOR_FP32, ref)
    assert found.mismatched > 0, "the element-wise bound must fail for the fp64 check to judge"
    assert found.passed and found.rmse is not None and found.rmse["local_mismatched"] == 0
    assert found.rmse["multiplier"] == 2.0 and "-> rounding" in found.message


def test_independent_rounding_where_eager_happens_to_be_exact_is_rounding() -> None:
    """Compiled and eager round independently, by up to 1e-5 and 1.5e-5: where eager happens to land on the exact
    answer, compiled is still 1.5e-5 off. That is rounding, so the per-element rule allows k x eager's worst error,
    not k x its error at that element (which rejected such elements in real half-precision runs)."""
    g = torch.Generator().manual_seed(1)
    ref = torch.randn(4096, generator=g, dtype=torch.float64)
    eager = (ref + 1e-5 * torch.rand(4096, generator=g, dtype=torch.float64)).float()
    compiled = (ref - 1.5e-5 * torch.rand(4096, generator=g, dtype=torch.float64)).float()
    found = check(eager, compiled, INDUCTOR_FP32, ref)
    assert found.mismatched > 0 and found.passed and found.rmse is not None
    assert found.rmse["local_ratio"] < 1 and found.rmse["compiled"] <= found.rmse["bound"]


def test_non_finite_elements_stay_out_of_the_fp64_check() -> None:
    """The same infinity in both forms is equal; the rmse and the per-element rule run over the finite elements."""
    ref, eager, compiled = fp64_triple(2000, 1e-5, 1.5)
    eager[7] = compiled[7] = INF
    found = check(eager, compiled, INDUCTOR_FP32, ref)
    assert found.passed and math.isfinite(found.rmse["compiled"]) and math.isfinite(found.rmse["local_ratio"])


# -- 3. dynamo's multiplier rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tolerance", "dtype", "numel", "multiplier"),
    [(INDUCTOR_FP32, torch.float32, 999, 3.0), (INDUCTOR_FP32, torch.float32, 1000, 2.0),
     (tolerance_for("compiled", torch.float64, "inductor"), torch.float64, 10**6, 2.0),
     (tolerance_for("compiled", torch.bfloat16, "inductor"), torch.bfloat16, 10**6, 3.0),
     (tolerance_for("compiled", torch.float32, "inductor", autocast="float16"), torch.float32, 10**6, 3.0),
     (Tolerance(2e-2, 2e-2, rmse_factor=2.0), torch.float32, 10**6, 3.0), (EXACT, torch.float32, 10**6, None)],
    ids=["fp32-999", "fp32-1000", "fp64", "bf16", "fp16-autocast-grad", "tol-2e-2", "bitwise"],
)
def test_rmse_multiplier_is_dynamos(tolerance: Tolerance, dtype: torch.dtype, numel: int,
                                    multiplier: float | None) -> None:
    """torch._dynamo.utils.same: 2.0, or 3.0 for < 1000 elements, half precision or tol >= 2e-2. Old code: the
    table's fixed factor per dtype (2.0 for a 999-element float32 tensor)."""
    assert tolerance.rmse_multiplier(dtype, numel) == multiplier


@pytest.mark.parametrize(("numel", "passed"), [(999, True), (1000, False)])
def test_engine_applies_the_multiplier_by_size(numel: int, passed: bool) -> None:
    """Compiled 2.5x as far from float64 as eager: within 3 x eager's rmse for a small tensor (noise dominates
    there), over 2 x for a large one, where the rmse rule is the one that fails."""
    ref, eager, compiled = fp64_triple(numel, 1e-5, 2.5)
    found = check(eager, compiled, INDUCTOR_FP32, ref)
    assert found.rmse is not None and found.rmse["multiplier"] == (3.0 if numel < 1000 else 2.0)
    assert found.passed is passed and found.rmse["local_mismatched"] == 0
    assert passed or "miscompile (rmse rule failed)" in found.message


# -- 4. outputs and gradients under autocast ---------------------------------------------------------------------


def test_aot_eager_autocast_training_outputs_are_bitwise_and_gradients_are_not() -> None:
    """Old code: every tensor of a training case, outputs included, got the autocast tolerance, so an output that
    was one bf16 step off passed. aot_eager's forward is eager's kernels: only its traced backward rounds."""

    def tolerance(name: str) -> Tolerance:
        return tolerance_for("compiled", torch.float32, "aot_eager", autocast="bfloat16", training=True,
                             gradient=name.startswith("grad/"))

    assert tolerance("actions") is EXACT and tolerance("loss") is EXACT
    assert tolerance("grad/x") == tolerance_for("compiled", torch.float32, "inductor", autocast="bfloat16")
    actions = torch.tensor([0.5, 1.0], dtype=torch.bfloat16)
    grad = torch.tensor([0.5, 1.0])
    one_step = {"actions": actions + torch.tensor([0.0, 2**-7], dtype=torch.bfloat16), "grad/x": grad + 2**-7}
    checks = {c.tensor: c for c in compare({"actions": actions, "grad/x": grad}, one_step, "p", tolerance)}
    assert not checks["actions"].passed and checks["actions"].tolerance is EXACT
    assert checks["grad/x"].passed and checks["grad/x"].tolerance == tolerance("grad/x")


@pytest.mark.parametrize(("backend", "training"), [("eager", True), ("aot_eager", False)])
def test_autocast_gradients_stay_bitwise_where_the_kernels_are_eagers(backend: str, training: bool) -> None:
    """The eager backend runs eager's backward; in eval there is no backward, whatever the tensor."""
    assert tolerance_for("compiled", torch.float32, backend, autocast="float16", training=training,
                         gradient=True) is EXACT


# -- 5. the doc states the table's numbers -----------------------------------------------------------------------


@pytest.mark.parametrize(("autocast", "short"), [("bfloat16", "bf16"), ("float16", "fp16")])
def test_autocast_doc_states_the_tables_tolerance(autocast: str, short: str) -> None:
    """The doc's prose called the autocast bounds "assert_close's half-precision defaults" (atol 1e-5) while the
    table, its row and the measured reports use atol 1e-2 / 1e-3; the prose is fixed, and this holds the row to
    the table."""
    stated = re.search(rf"{short}: rtol ([0-9.e-]+), atol ([0-9.e-]+)", DOC.read_text())
    assert stated is not None
    tol = tolerance_for("compiled", torch.float32, "inductor", autocast=autocast)
    assert (float(stated[1]), float(stated[2])) == (tol.rtol, tol.atol)
