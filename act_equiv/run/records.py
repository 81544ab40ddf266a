"""What a run records: each form's named outputs, the errors raised, compile statistics. The runner
writes these and judges nothing; the oracle reads them. Plain data, so the oracle needs no part of the runner."""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from act_equiv import compat
from act_equiv.case import Case
from act_equiv.errors import ErrorKind, FindingError
from act_equiv.run.compiled import CompileStats
from act_equiv.settings import Settings

__all__ = ["FAILED", "CaseRun", "ErrorRecord", "FormsRecord", "Outputs", "batch_suffix", "error_kind", "guarded",
           "record_outputs"]

Outputs = dict[str, "torch.Tensor | None"]


@dataclass
class ErrorRecord:
    """An exception raised by a form, summarised for reports (type, message, innermost frames) and classified
    while the exception object is still at hand (`kind`, which the oracle reads; `type` is for display)."""

    call: str
    """Where it was raised: the call ("reference:forward", "compiled", "export:onnx", "warm-up", ...)."""
    type: str
    kind: ErrorKind
    message: str
    traceback: list[str]
    form: str | None = None
    """The form (`act_equiv.forms.FORMS`) whose run raised, or None for the eager forms."""

    @classmethod
    def capture(cls, call: str, error: BaseException, form: str | None = None) -> ErrorRecord:
        """`error` as raised here, or, for a side in a worker, as the worker recorded it (`RemoteError`)."""
        remote = getattr(error, "record", None)
        if remote is not None:
            return cls(call, remote["type"], remote.get("kind", "raised"), remote["message"], remote["traceback"],
                       form)
        frames = traceback.format_exception(type(error), error, error.__traceback__)
        return cls(call, type(error).__name__, error_kind(error),
                   str(error).strip().splitlines()[0] if str(error) else "", [line.rstrip() for line in frames[-6:]],
                   form)


def error_kind(error: BaseException) -> ErrorKind:
    """What an exception from running a form means: act_equiv's own say it (`FindingError.kind`, by class, so a
    subclass counts too); dynamo's (a target that compiles itself) are mapped through `compat`; anything else the
    code itself raised."""
    if isinstance(error, FindingError):
        return error.kind
    if compat.is_recompile_limit_error(error) or compat.is_no_compiled_frames_error(error):
        return "not_compiled"
    if compat.is_graph_break_error(error):
        return "graph_break"
    return "raised"


FAILED = object()
"""What `guarded` returns when the call raised (its error is recorded)."""


def guarded(record: Any, call: str, fn: Callable[[], Any], form: str | None = None) -> Any:
    """`fn()`, or `FAILED` with its error appended to `record.errors` as raised at `call` (by `form`)."""
    try:
        return fn()
    except Exception as error:
        record.errors.append(ErrorRecord.capture(call, error, form))
        return FAILED


def record_outputs(record: Any, name: str, call: str, fn: Callable[[], Outputs], form: str | None = None) -> bool:
    """`record.outputs[name] = fn()`; False (the error recorded at `call`) when it raised."""
    outputs = guarded(record, call, fn, form)
    if outputs is FAILED:
        return False
    record.outputs[name] = outputs
    return True


@dataclass
class FormsRecord:
    """What one side's forms produced (`act_equiv.run.form_runner`), in the process that owns the side; plain data,
    so a worker sends it back as it is (`to_dict`) and the runner adds it to the case's run (`add_to`)."""

    outputs: dict[str, Outputs] = field(default_factory=dict)
    errors: list[ErrorRecord] = field(default_factory=list)
    compile_stats: CompileStats | None = None
    deployed: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployed_sizes: list[int] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["errors"] = [dataclasses.asdict(error) for error in self.errors]
        data["compile_stats"] = None if self.compile_stats is None else dataclasses.asdict(self.compile_stats)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FormsRecord:
        stats = data["compile_stats"]
        return cls(**{**data, "errors": [ErrorRecord(**error) for error in data["errors"]],
                      "compile_stats": None if stats is None else CompileStats(**stats)})

    def add_to(self, run: CaseRun) -> None:
        run.outputs.update(self.outputs)
        run.errors += self.errors
        run.compile_stats = self.compile_stats
        run.deployed.update(self.deployed)
        run.deployed_sizes, run.batch_sizes = self.deployed_sizes, self.batch_sizes


@dataclass
class CaseRun:
    case: Case
    settings: Settings
    outputs: dict[str, Outputs] = field(default_factory=dict)
    """At the case's batch size: "reference", "target", "target_repeat" (model level), "reference_policy",
    "target_policy" (policy level), in training "reference_trajectory", "target_trajectory" and the target's compiled
    ones "compiled_trajectory", "compiled-step_trajectory" (`act_equiv.run.training`, with "<side>_trajectory64" and
    "<side>_trajectory_nodropout" where they differ), where a pair differs the float64 evidence "reference64",
    "target64", "reference_policy64", "target_policy64", and "compiled" with, for the fp64-referenced check,
    "target64" (or "reference64" where the target cannot run in float64). The eager target's, the compiled form's
    and the float64 outputs at a further batch size N are named "<name>@batchN"."""
    errors: list[ErrorRecord] = field(default_factory=list)
    layouts: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """Per level ("model", "policy"), where the reference's checkpoint does not load strictly into the target or the
    target's back into the reference: the missing and unexpected keys, and the keys whose shapes differ."""
    compile_stats: CompileStats | None = None
    deployed: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per deployment form: the example batch it was exported at, whether this case exported it or loaded its
    weights into the structure's export, and the export's seconds."""
    deployed_sizes: list[int] = field(default_factory=list)
    """The batch sizes the deployment forms were called at (eval only)."""
    batch_sizes: list[int] = field(default_factory=list)
    features: dict[str, bool | int] = field(default_factory=dict)
    """The interacting features as the case really had them (`Case.features`, padding read off the batch)."""
    explain: dict[str, Any] = field(default_factory=dict)
    trained: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per trajectory ("reference", "target", "compiled", "compiled-step"): how it trained (optimizer, parameter
    groups, clipping norm; for a compiled one, the compiled graphs each step ran)."""
    seconds: float = 0.0
    unsupported: dict[str, str] | None = None
    """A side that cannot express the case: {"side": "reference" | "target", "spec", "reason"}."""


def batch_suffix(case: Case, size: int) -> str:
    """How a form's name says the batch size it ran at: "" at the case's own, "@batchN" at a further one."""
    return "" if size == case.batch.batch_size else f"@batch{size}"
