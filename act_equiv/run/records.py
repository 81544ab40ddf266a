"""What a run records: its settings, each form's named outputs, the errors raised, compile statistics. The runner
writes these and judges nothing; the oracle reads them. Plain data, so the oracle needs no part of the runner."""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from act_equiv.case import Case, make_batch
from act_equiv.run.compiled import CompileStats, ErrorKind, error_kind
from act_equiv.run.deployed import ExportSpecialisedError

__all__ = ["DTYPES", "FAILED", "CaseRun", "ErrorRecord", "FormsRecord", "Outputs", "RunSettings", "batch_suffix",
           "guarded", "record_form"]

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


Outputs = dict[str, "torch.Tensor | None"]


@dataclass(frozen=True)
class RunSettings:
    """How forms are run (the oracle's tolerances follow from these)."""

    device: str = "cpu"
    dtype: str = "float32"
    backend: str | None = "aot_eager"
    """`None` runs no compiled form."""
    mode: str | None = None
    dynamic: bool | None = None
    extra_batch_sizes: int = 2
    """Compiled calls at this many further batch sizes (eval only), each compared with the eager target at that
    size: a graph that is wrong only once the batch dimension is symbolic shows there; recompiles are counted."""
    reference64: bool = False
    """Run a float64 reference beside the compiled form (the gate asks when a compiled tolerance may fall back to
    the fp64-referenced check)."""
    autocast: str | None = None
    """"bfloat16" / "float16": every form but the float64 reference runs under `torch.autocast` (float32 weights)."""
    forms: tuple[str, ...] = ()
    """Deployment forms (`act_equiv.run.deployed.FORMS`) run in eval cases beside the eager target, at the case's
    batch size, at batch 1 (the robot loop) and at the compiled form's further sizes, all from one export."""
    onnx_exporter: str = "dynamo"
    """The onnx form's exporter: "dynamo" (torch.export based) or "torchscript"."""
    train_steps: int = 3
    """Optimizer steps of a training case's trajectory (`act_equiv.run.training`); 0 trains none."""
    trained_structures: int = 1
    """Structures per run whose training trajectory is compiled too, each of their cases then trained compiled: a
    compiled trajectory compiles the forward, backward and (whole step) the optimizer over every parameter, and
    again in float64 where it is not bitwise (about 40 s a structure with aot_eager, minutes with inductor, on 2 CPU
    cores)."""
    explain: bool = True
    """Trace the eager sides with `torch._dynamo.explain` (once per structure and mode, in the compiled stage: a
    trace costs seconds): both sides where no compiled form runs, and the target where its compiled form hit a graph
    break (fullgraph stops at the first; the trace lists every one). A compiled form that runs counts graph breaks
    itself, so a clean structure is not traced twice."""

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def batch(self, case: Case, size: int) -> dict[str, Any]:
        """The case's batch at `size` on this device and dtype: the same tensors in every process that makes it."""
        return make_batch(case.config, case.batch.with_batch_size(size), self.device, self.torch_dtype)

    def label(self) -> str:
        """How the forms ran, in a few words ("cpu float32+bfloat16 autocast, inductor"): reports group by it."""
        precision = self.dtype + (f"+{self.autocast} autocast" if self.autocast else "")
        compiled = self.backend if self.mode is None else f"{self.backend} {self.mode}"
        deployed = [f"onnx {self.onnx_exporter}" if form == "onnx" else form for form in self.forms]
        return f"{self.device} {precision}, {compiled or 'not compiled'}" + "".join(f", {form}" for form in deployed)


@dataclass
class ErrorRecord:
    """An exception raised by a form, summarised for reports (type, message, innermost frames) and classified
    while the exception object is still at hand (`kind`, which the oracle reads; `type` is for display)."""

    stage: str
    type: str
    kind: ErrorKind
    message: str
    traceback: list[str]
    form: str | None = None
    """The form (`act_equiv.forms.FORMS`) whose run raised, or None for the eager forms."""

    @classmethod
    def capture(cls, stage: str, error: BaseException, form: str | None = None) -> ErrorRecord:
        """`error` as raised here, or, for a side in a worker, as the worker recorded it (`RemoteError`)."""
        remote = getattr(error, "record", None)
        if remote is not None:
            return cls(stage, remote["type"], remote.get("kind", "raised"), remote["message"], remote["traceback"],
                       form)
        frames = traceback.format_exception(type(error), error, error.__traceback__)
        kind: ErrorKind = error_kind(error)
        if type(error).__name__ == "WorkerError":  # by name: act_equiv.run.worker imports this module's users
            kind = "worker_failed"
        elif isinstance(error, ExportSpecialisedError):
            kind = "specialised"
        return cls(stage, type(error).__name__, kind,
                   str(error).strip().splitlines()[0] if str(error) else "", [line.rstrip() for line in frames[-6:]],
                   form)


FAILED = object()
"""What `guarded` returns when the call raised (its error is recorded)."""


def guarded(record: Any, stage: str, fn: Callable[[], Any], form: str | None = None) -> Any:
    """`fn()`, or `FAILED` with its error appended to `record.errors` as raised at `stage` (by `form`)."""
    try:
        return fn()
    except Exception as error:
        record.errors.append(ErrorRecord.capture(stage, error, form))
        return FAILED


def record_form(record: Any, name: str, stage: str, fn: Callable[[], Outputs], form: str | None = None) -> bool:
    """`record.forms[name] = fn()`; False (the error recorded at `stage`) when it raised."""
    outputs = guarded(record, stage, fn, form)
    if outputs is FAILED:
        return False
    record.forms[name] = outputs
    return True


@dataclass
class FormsRecord:
    """What one side's forms produced (`act_equiv.run.form_runner`), in the process that owns the side; plain data,
    so a worker sends it back as it is (`to_dict`) and the runner adds it to the case's run (`add_to`)."""

    forms: dict[str, Outputs] = field(default_factory=dict)
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
        run.forms.update(self.forms)
        run.errors += self.errors
        run.compile_stats = self.compile_stats
        run.deployed.update(self.deployed)
        run.deployed_sizes, run.batch_sizes = self.deployed_sizes, self.batch_sizes


@dataclass
class CaseRun:
    case: Case
    settings: RunSettings
    forms: dict[str, Outputs] = field(default_factory=dict)
    """At the case's batch size: "reference", "target", "target_repeat" (model level), "reference_policy",
    "target_policy" (policy level), in training "reference_trajectory", "target_trajectory" and the target's compiled
    ones "compiled_trajectory", "compiled-step_trajectory" (`act_equiv.run.training`, with "<side>_trajectory64" and
    "<side>_trajectory_nodropout" where they differ), where a pair differs the float64 evidence "reference64",
    "target64", "reference_policy64", "target_policy64", and "compiled" with, for the fp64-referenced check,
    "target64" (or "reference64" where the target cannot run in float64). The eager target, compiled and float64
    forms at a further batch size N are named "<form>@batchN"."""
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
