"""Verdicts as data: what was compared, how far apart, against which tolerance, and why it failed.

The oracle produces these, rendered once here (`CaseVerdict.failures`, `Tolerance.describe`) and carried in
`to_dict()`; the report, JUnit and the CLI print those fields and render nothing of their own.
"""

from __future__ import annotations

import dataclasses
import math
import re
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
    "input_mutated",  # a side wrote into a tensor of the batch it was given
    "stateful",  # the target's outputs depend on what it ran before (the same batch after another differs)
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
the same exception type at the same call (behaviour unchanged: a pre-existing bug is not the edit's regression)."""
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
    """For raised and raised-both: each side's call, exception type and innermost traceback lines."""

    @property
    def warning(self) -> bool:
        """Accepted, yet not the same bits (rounding, raised-both): printed as a warning line."""
        return self.accepted and self.name in WARNING_CLASSES

    def line(self) -> str:
        return f"[{self.level}: {self.label or self.name}] {self.evidence}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "warning": self.warning}


def innermost_frame(traceback: list[str]) -> tuple[str, str, str, str] | None:
    """The innermost `File "...", line N, in f` entry of formatted traceback lines: (file name, line, function,
    code), or None without one."""
    frames = [line.strip() for line in traceback if line.strip().startswith("File ")]
    if not frames:
        return None
    frame = frames[-1].splitlines()
    path, _, rest = frame[0].removeprefix('File "').partition('", line ')
    line, _, function = rest.partition(", in ")
    return path.rsplit("/", 1)[-1], line, function, frame[1].strip() if len(frame) > 1 else ""


def _raise_signature(error: dict[str, Any]) -> str:
    """A raise, stably: exception type, call (batch size dropped) and innermost frame by file and function (line
    numbers move with every edit)."""
    frame = innermost_frame(error.get("traceback", []))
    call = re.sub(r"@batch\d+", "", error.get("call", "?"))
    return f"{error['type']} at {call}" + (f" in {frame[0]}:{frame[2]}" if frame else "")


def _output(tensor: str) -> str:
    """A compared tensor's output, stably: every parameter gradient is `grad`."""
    return "grad" if tensor.startswith("grad/") else tensor


@dataclass
class CaseVerdict:
    case: Case
    checks: list[TensorCheck] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    """Measurements that are reported, not judged: graph counts, compile seconds, recompiles."""
    classes: dict[str, PairClass] = field(default_factory=dict)
    """The reference/target pair's class per level ("model", "policy")."""
    accepted: frozenset[str] = frozenset()
    """Failure signatures a known-findings baseline accepts (`act_equiv.baseline`): such failures are `known`, not
    `failures`, and do not fail the case."""

    @property
    def _classed(self) -> set[str]:
        return {pair for pair_class in self.classes.values() for pair in pair_class.pairs}

    def failure_lines(self) -> list[tuple[str, str]]:
        """Every failure as (signature, line): `[kind] message` per finding, `[level: class] evidence` per pair
        class not accepted (then its failed checks), `[pair] message` per other failed check. The signature names
        the failure stably across cases and edits: its kind, level or form, side, exception type and innermost
        frame (file and function), or the diverging output and the mode (train or eval)."""
        mode = "train" if self.case.training else "eval"
        refused = {pair for c in self.classes.values() if not c.accepted for pair in c.pairs}
        classed = self._classed
        lines = []
        for finding in self.findings:
            raised = f" {_raise_signature(finding.detail)}" if "type" in finding.detail else ""
            lines.append((f"{finding.check}{raised}", f"[{finding.check}] {finding.message}"))
        by_pair = {}
        for c in self.classes.values():
            if c.accepted:
                continue
            sides = "".join(f" ({side} {_raise_signature(error)})" for side, error in c.detail.items()
                            if "type" in error)
            lines.append((f"{c.level}: {c.name}{sides or f' ({mode})'}", c.line()))
            by_pair.update(dict.fromkeys(c.pairs, f"{c.level}: {c.name}"))
        for check in self.checks:
            if check.passed or (check.pair in classed and check.pair not in refused):
                continue
            where = by_pair.get(check.pair) or check.form or re.sub(r"@batch\d+", "", check.pair)
            lines.append((f"{where} {check.kind} on {_output(check.tensor)} ({mode})",
                          f"[{check.pair}] {check.message}"))
        return lines

    @property
    def passed(self) -> bool:
        return all(signature in self.accepted for signature, _ in self.failure_lines())

    @property
    def known(self) -> dict[str, str]:
        """The failures the baseline accepts: signature -> its first failure line."""
        known: dict[str, str] = {}
        for signature, line in self.failure_lines():
            if signature in self.accepted:
                known.setdefault(signature, line)
        return known

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
        """The failure text of the failures no baseline accepts, one line each (`failure_lines`)."""
        return [line for signature, line in self.failure_lines() if signature not in self.accepted]

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
            "signatures": list(dict.fromkeys(sig for sig, _ in self.failure_lines() if sig not in self.accepted)),
            "known": self.known,
            "warnings": self.warnings,
            "classes": {level: c.to_dict() for level, c in self.classes.items()},
            "info": self.info,
        }


class Divergence(AssertionError):  # noqa: N818 - the domain word; it is an assertion failure
    """Raised by properties so that Hypothesis shrinks; carries the verdict for the report."""

    def __init__(self, verdict: CaseVerdict) -> None:
        self.verdict = verdict
        super().__init__(verdict.summary())
