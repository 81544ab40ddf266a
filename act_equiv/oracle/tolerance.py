"""The one tolerance table. Every entry says where its numbers come from.

Three kinds of comparison:
- "eager": the target's eager forward against the legacy reference. Same math, same kernels, so the
  default is bitwise equality, whatever the dtype or device. A target that reorders floating point on
  purpose (an equivalent-but-different refactor) is judged `rounding` by its float64 evidence
  (`act_equiv.oracle.judge`), and by `EAGER_ROUNDING` only where a side cannot run in float64.
- "compiled": the target compiled against the target eager. The `eager` and `aot_eager` backends run the
  same ATen kernels in the same order, so they stay bitwise (under autocast, aot_eager's gradients do not).
  Inductor fuses and reorders reductions, so it gets a tolerance per dtype, and when that fails, the
  fp64-referenced check (`act_equiv.oracle.compare`): PyTorch's dynamo accuracy rule (compiled rmse vs a float64 run
  at most k x eager's, + atol / 10, k from `Tolerance.rmse_multiplier`) and the same rule per element, so that
  one bad element cannot hide in a large tensor's mean.
  See docs/TORCH_COMPILE_ACT.md ("Tolerances and why") for the measured errors behind each number.
- "exported", "onnx", "aoti": a deployment form's actions against the eager target (docs/EXPORT.md has the
  measured errors). `ExportedProgram.module()` runs the same ATen kernels: bitwise. AOTInductor is inductor's
  generated code: inductor's entry. onnxruntime runs its own kernels (MLAS GEMMs and convolutions): a float32
  bound and the fp64-referenced check, like inductor's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from act_equiv.run.numerics import AUTOCAST_DTYPES

__all__ = ["EAGER_ROUNDING", "EXACT", "Tolerance", "rounding_evidence", "tolerance_for", "trajectory_envelope"]


@dataclass(frozen=True)
class Tolerance:
    """|actual - expected| <= atol + rtol * |expected| per element; rtol = atol = 0 means bitwise."""

    rtol: float
    atol: float
    rmse_factor: float | None = None
    """The fp64-referenced check's multiplier for large tensors (None: no such check); see `rmse_multiplier`."""
    source: str = ""
    mean_rule: bool = True
    """Whether the fp64-referenced check holds the rmse to dynamo's bound too, or only each element to the envelope
    (`trajectory_envelope`)."""

    @property
    def bitwise(self) -> bool:
        return self.rtol == 0 and self.atol == 0

    def describe(self) -> str:
        """The one text of a tolerance: in check messages, report.json (`tolerance.describe`) and summary.md."""
        if self.bitwise:
            return "bitwise"
        text = f"rtol={self.rtol:g}, atol={self.atol:g}"
        if not self.rmse_factor:
            return text
        return text + (f", fp64 rmse factor {self.rmse_factor:g}" if self.mean_rule else
                       f", fp64 envelope factor {self.rmse_factor:g} per element")

    def rmse_multiplier(self, dtype: torch.dtype, numel: int) -> float | None:
        """k of the fp64-referenced check for one tensor (None: no such check), by torch._dynamo.utils.same's rule:
        3.0 where noise dominates the error metric (fewer than 1000 elements, a half-precision dtype, or
        tol >= 2e-2, dynamo's `tol` being our atol), else `rmse_factor`. Left out of `same()`'s rule, as nothing
        measured here needs them: 3.0 for 1x1-kernel 4-D tensors (amp noise; our autocast entries are 3.0 anyway)
        and the opt-in 8/10 for tensors of <= 500 elements."""
        if self.rmse_factor is None:
            return None
        noisy = numel < 1000 or dtype in (torch.float16, torch.bfloat16) or self.atol >= 2e-2
        return max(self.rmse_factor, 3.0) if noisy else self.rmse_factor


EXACT = Tolerance(0.0, 0.0, source="same kernels in the same order: results must be bitwise equal")

# torch.testing.assert_close's defaults: rounding of one reordered reduction, no more.
EAGER_ROUNDING = {
    torch.float64: Tolerance(1e-7, 1e-7, source="assert_close default for float64"),
    torch.float32: Tolerance(1.3e-6, 1e-5, source="assert_close default for float32"),
    torch.bfloat16: Tolerance(1.6e-2, 1e-5, source="assert_close default for bfloat16"),
    torch.float16: Tolerance(1e-3, 1e-5, source="assert_close default for float16"),
}

# Inductor vs eager. Element-wise bound first, then the fp64-referenced check (large-tensor factor 2 as in
# torch/_dynamo/utils.py `same`, 3 for half precision; `rmse_multiplier` applies 3 to small tensors).
_INDUCTOR = {
    torch.float64: Tolerance(1e-7, 1e-7, rmse_factor=2.0, source="inductor fp64; measured max abs ~1e-9"),
    torch.float32: Tolerance(1.3e-6, 1e-5, rmse_factor=2.0,
                             source="inductor fp32; measured max abs <= 4.8e-7 outputs, 3.8e-6 grads"),
    torch.bfloat16: Tolerance(1.6e-2, 1e-2, rmse_factor=3.0, source="inductor bf16; assert_close rtol"),
    torch.float16: Tolerance(1e-3, 1e-3, rmse_factor=3.0, source="inductor fp16; assert_close rtol"),
}

# Compiled vs eager under autocast (float32 weights, eligible ops in half precision). Forward stays bitwise with
# the eager and aot_eager backends (outputs and losses, eval and training); AOTAutograd's traced backward rounds
# some gradients differently from eager's backward, and inductor reorders everything. Element-wise bound first
# (rtol: assert_close's half-precision default; atol: about one half-precision rounding step at magnitude 1,
# bf16 eps 7.8e-3, fp16 eps 9.8e-4, not assert_close's 1e-5), then the fp64-referenced check with dynamo's amp
# factor 3 (also for the float32 gradients, whose error comes from half-precision matmuls).
# Measured errors: "Autocast" in docs/TORCH_COMPILE_ACT.md.
_AUTOCAST_COMPILED = {
    "bfloat16": Tolerance(1.6e-2, 1e-2, rmse_factor=3.0,
                          source="compiled under bf16 autocast; measured max abs: aot_eager grads 0.75, inductor "
                                 "outputs 0.054, grads 5.6; compiled rmse vs fp64 <= 2.2x eager's"),
    "float16": Tolerance(1e-3, 1e-3, rmse_factor=3.0,
                         source="compiled under fp16 autocast; measured max abs: aot_eager grads 0.0625, inductor "
                                "outputs 0.002, grads 0.0625; compiled rmse vs fp64 <= 2.3x eager's (tensors)"),
}

_BITWISE_BACKENDS = ("eager", "aot_eager")

# onnxruntime (CPU execution provider) vs eager, float32 only (the gate refuses the onnx form in float64).
_ONNX = {
    torch.float32: Tolerance(1.3e-6, 1e-5, rmse_factor=2.0,
                             source="onnxruntime CPU fp32; measured max abs 7.2e-7 at input scale 1, 1.5e-5 at "
                                    "scale 100 (fp64-referenced check passed); docs/EXPORT.md"),
}


def rounding_evidence(dtype: torch.dtype, autocast: str | None = None) -> Tolerance:
    """How close a target's float32 (or mixed-precision) output must be to the reference's float64 result to be
    rounding when it differs from the reference's: assert_close's tolerance against the reference's output, else
    dynamo's accuracy rule with the reference's own error as the yardstick (rmse factor 2 as in
    torch._dynamo.utils.same, 3 for small or half-precision tensors)."""
    return dataclasses.replace(tolerance_for("eager", dtype, eager_rounding=True, autocast=autocast), rmse_factor=2.0,
                               source="a target's float32 vs the reference's float64, the reference's own float32 "
                                      "error as the yardstick (dynamo's accuracy rule)")


def trajectory_envelope(dtype: torch.dtype, autocast: str | None = None) -> Tolerance:
    """How close a float32 training trajectory must stay to the float64 one at every step to be rounding:
    assert_close's tolerance, else every element within k x the greatest deviation the yardstick's own float32 shows
    in that tensor at that step (+ rtol |x|), k as `rounding_evidence`'s. Without dynamo's rmse rule: over
    optimizer steps Adam turns last-bit differences into steps of up to the learning rate at the elements whose
    gradient is near its eps, so which elements carry a float32 run's error is chance, and two honest float32 runs'
    rmse differ by more than that rule's factor (measured: 5.6x, the whole step compiled at input scale 1e4, a conv
    weight's exp_avg at step 2; docs/TORCH_COMPILE_ACT.md). The envelope's greatest deviation is the stable
    measure, and it still holds one bad element. No atol: assert_close's 1e-5 is as large as one AdamW step at
    LeRobot's learning rate, and the optimizer state's second moments are far smaller still."""
    return dataclasses.replace(rounding_evidence(dtype, autocast), atol=0.0, mean_rule=False,
                               source="a float32 trajectory vs the float64 one, per element within the yardstick's "
                                      "own float32 envelope")


def tolerance_for(kind: str, dtype: torch.dtype, backend: str | None = None, eager_rounding: bool = False,
                  autocast: str | None = None, training: bool = False, gradient: bool = False) -> Tolerance:
    """The tolerance for one comparison kind ("eager" or "compiled") at `dtype` on `backend`, under `autocast`
    ("bfloat16" / "float16") when the forms ran in mixed precision, in training or eval, for an output (actions,
    mu, log_sigma_x2, the losses) or a parameter `gradient` ("grad/<param>"): under autocast only aot_eager's
    traced backward rounds differently, so only its gradients leave bitwise. A deployment form's kind ("exported",
    "onnx", "aoti") depends on `dtype` only: the gate runs them without autocast, on actions in eval."""
    if kind == "eager":
        if not eager_rounding:
            return EXACT
        return EAGER_ROUNDING[AUTOCAST_DTYPES[autocast]] if autocast else EAGER_ROUNDING[dtype]
    if kind == "exported":
        return EXACT
    if kind == "aoti":
        return _INDUCTOR[dtype]
    if kind == "onnx":
        return _ONNX[dtype]
    if kind != "compiled":
        raise ValueError(f"kind={kind!r} is invalid: 'eager', 'compiled', 'exported', 'onnx' or 'aoti'")
    if autocast:
        same_kernels = backend == "eager" or (backend == "aot_eager" and not (training and gradient))
        return EXACT if same_kernels else _AUTOCAST_COMPILED[autocast]
    if backend in _BITWISE_BACKENDS:
        return EXACT
    return _INDUCTOR[dtype]
