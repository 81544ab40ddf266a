"""Verdicts as data: what was compared, how far apart, against which tolerance, and why it failed.

The oracle produces these, rendered once here (`CaseVerdict.failures`, `Tolerance.describe`) and carried in
`to_dict()`; the report, JUnit and the CLI print those fields and render nothing of their own.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from act_equiv.case import Case
from act_equiv.oracle.tolerance import Tolerance


@dataclass
class TensorCheck:
    """One tensor of one form pair (the analogue of torch.testing's ErrorMeta, but kept when it passes)."""

    pair: str
    tensor: str
    passed: bool
    kind: str  # "close" | "mismatch" | "shape" | "dtype" | "nan" | "inf" | "missing"
    """"nan" / "inf": a non-finite element that is not the same in both (NaN in one form only; an infinity where the
    other has a finite value or the other infinity). Non-finite elements are compared by identity, never by a
    tolerance."""
    tolerance: Tolerance
    max_abs: float = 0.0
    max_rel: float = 0.0
    where: tuple[int, ...] | None = None
    mismatched: int = 0
    numel: int = 0
    ratio: float = 0.0
    """Worst |diff| / (atol + rtol * |expected|): <= 1 passes; inf when bitwise is required and it differs."""
    rmse: dict[str, Any] | None = None
    """The fp64-referenced check, when it ran: "compiled"/"eager" rmse vs float64, "multiplier" k, "bound"
    (k x eager + atol/10), and the per-element rule's "eager_max" (eager's worst |eager - fp64|), "local_ratio"
    (worst |compiled - fp64| over its allowance k x eager_max + atol + rtol |fp64|), "local_mismatched" (elements
    over it) and "local_where" (the first of them, else the worst element)."""
    message: str = ""
    form: str | None = None
    """The target's form (`act_equiv.forms`) this pair judged, or None for the reference/target pairs."""

    @property
    def margin(self) -> float:
        """How much of the allowance is left (1 = untouched, 0 = at the limit, negative = over)."""
        return 1.0 - self.ratio if math.isfinite(self.ratio) else -math.inf

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["tolerance"] = {**dataclasses.asdict(self.tolerance), "describe": self.tolerance.describe()}
        data["margin"] = self.margin
        return data


FindingKind = Literal[
    "target_raised",  # a form of the target raised
    "reference_raised",  # the reference side raised where the target did not
    "worker_failed",  # a side's worker process hung or died
    "compiled_ran",  # compiled code never ran (a silent eager fallback)
    "compiled_raised",  # torch.compile or the compiled graph raised
    "graph_break",  # the compiled target broke its graph
    "recompiles",  # more recompiles than allowed when only the batch size changed
    "eager_nondeterministic",  # the eager target did not repeat itself bit for bit
    "reference_not_finite",  # the reference itself overflowed, so nothing can be judged against it
    "reference64_raised",  # the float64 run of the fp64-referenced check raised
    "autocast_ran",  # the autocast run did not really compute in the autocast dtype
    "export_specialised",  # a deployment export does not serve every batch size (specialised, or refused one)
    "export_raised",  # a deployment exporter or its runtime raised
]
"""Every kind of `Finding` the oracle emits (`act_equiv.oracle.judge`)."""
FINDING_KINDS: tuple[FindingKind, ...] = get_args(FindingKind)


@dataclass
class Finding:
    """A failure that is not a tensor mismatch: the target raised, compiled code never ran, a graph break."""

    check: FindingKind
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


PairClassName = Literal["bitwise", "rounding", "divergent", "raised", "layout", "unsupported", "raised-both"]
"""What a compared pair of sides (reference/target) did, per level (model, policy): the same bits; different bits
that float64 runs show to be rounding only (or, without a float64 run, within assert_close's float32 tolerance);
a divergence; one side raised; the checkpoint layout changed; a side cannot express the case; both sides raised
the same exception type at the same stage (behaviour unchanged: a pre-existing bug is not the edit's regression)."""
PAIR_CLASSES: tuple[PairClassName, ...] = get_args(PairClassName)
WARNING_CLASSES: tuple[PairClassName, ...] = ("rounding", "raised-both")
COMPARED: tuple[PairClassName, ...] = ("bitwise", "rounding", "divergent")
"""The classes of a pair whose outputs were compared (the others raised, did not load, or could not run)."""
"""Classes that pass with a warning line, unless the run is strict."""


@dataclass
class PairClass:
    """The class of one level's pair, with the evidence for it, and whether the verdict accepts it."""

    level: str  # "model" | "policy"
    name: PairClassName
    evidence: str
    pairs: tuple[str, ...] = ()
    """The tensor-check pairs this class judges (their checks are evidence, read through the class)."""
    accepted: bool = True
    label: str = ""
    """The class as printed: the name, or "rounding (tolerance only, no float64 evidence)"."""
    detail: dict[str, Any] = field(default_factory=dict)
    """For raised and raised-both: each side's stage, exception type and innermost traceback lines."""

    @property
    def warning(self) -> bool:
        """Accepted, yet not the same bits (rounding, raised-both): printed as a warning line."""
        return self.accepted and self.name in WARNING_CLASSES

    def line(self) -> str:
        return f"[{self.level}: {self.label or self.name}] {self.evidence}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "warning": self.warning}


@dataclass
class CaseVerdict:
    case: Case
    checks: list[TensorCheck] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    """Measurements that are reported, not judged: graph counts, compile seconds, recompiles."""
    classes: dict[str, PairClass] = field(default_factory=dict)
    """The reference/target pair's class per level ("model", "policy")."""

    @property
    def _classed(self) -> set[str]:
        return {pair for pair_class in self.classes.values() for pair in pair_class.pairs}

    @property
    def passed(self) -> bool:
        classed = self._classed
        return (not self.findings and all(c.accepted for c in self.classes.values())
                and all(check.passed for check in self.checks if check.pair not in classed))

    @property
    def compared(self) -> bool:
        """Whether the reference/target pair compared outputs at some level (not only raised alike or skipped)."""
        return any(c.name in COMPARED for c in self.classes.values())

    @property
    def compared_forms(self) -> list[str]:
        """The target's forms (`act_equiv.forms`) whose outputs this case compared with its eager ones."""
        return self.info.get("compared_forms", [])

    @property
    def failures(self) -> list[str]:
        """The failure text, one line each: `[kind] message` per finding, `[level: class] evidence` per pair class
        not accepted (then its failed checks), `[pair] message` per other failed check."""
        refused = {pair for c in self.classes.values() if not c.accepted for pair in c.pairs}
        classed = self._classed
        return [f"[{f.check}] {f.message}" for f in self.findings] + [
            c.line() for c in self.classes.values() if not c.accepted] + [
            f"[{c.pair}] {c.message}" for c in self.checks if not c.passed and (c.pair in refused or
                                                                                 c.pair not in classed)]

    @property
    def warnings(self) -> list[str]:
        """Accepted classes that still differ from bitwise (rounding, raised-both), one line each."""
        return [c.line() for c in self.classes.values() if c.warning]

    def summary(self) -> str:
        if self.passed:
            return f"PASS {self.case.describe()}"
        return f"FAIL {self.case.describe()}\n" + "\n".join(self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case.to_dict(),
            "describe": self.case.describe(),
            "passed": self.passed,
            "compared": self.compared,
            "checks": [c.to_dict() for c in self.checks],
            "findings": [dataclasses.asdict(f) for f in self.findings],
            "failures": self.failures,
            "warnings": self.warnings,
            "classes": {level: c.to_dict() for level, c in self.classes.items()},
            "info": self.info,
        }


class Divergence(AssertionError):  # noqa: N818 - the domain word; it is an assertion failure
    """Raised by properties so that Hypothesis shrinks; carries the verdict for the report."""

    def __init__(self, verdict: CaseVerdict) -> None:
        self.verdict = verdict
        super().__init__(verdict.summary())
