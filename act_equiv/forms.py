"""The forms: one record per way the target runs beside its eager self, as PyTorch's OpInfo holds one record per op.

A form is the target as something other than its eager forward computes it: `compiled` (torch.compile), and the
deployment forms a robot runs (`exported`, `onnx`, `aoti`). Each record says, in one place, what the runner, the
oracle, the shrinker, the gate, the option table and the bench need to know of it: the modes it runs in, its
tolerance kind (`act_equiv.oracle.tolerance`), whether that tolerance may need float64 evidence, the finding kind
when it raises, what it needs installed, and its run function (`module:attr`, imported on demand). Adding a form is
one record here plus its run function.

A form runs in the process that owns the side's module (`act_equiv.run.form_runner`), a worker included; what it
needs is checked there (`missing`), before any case runs. This module imports no torch: the option table reads it
in every pytest session.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from typing import Literal

__all__ = ["COMPILED", "DEPLOYED", "EXPORT_EXTRA", "FORMS", "Form", "Mode", "load", "missing"]

Mode = Literal["eval", "train"]
EXPORT_EXTRA = "pip install 'act-equiv[export]'"


@dataclass(frozen=True)
class Form:
    """One form (see the module docstring)."""

    name: str
    summary: str
    modes: tuple[Mode, ...]
    """The case modes it runs in: a deployment form is an inference graph (eval only)."""
    tolerance: str
    """Its kind in the tolerance table (`act_equiv.oracle.tolerance.tolerance_for`)."""
    float64_evidence: bool
    """Whether its tolerance may fall back to the fp64-referenced check (then a float64 run is made beside it)."""
    raised: str
    """The finding kind when running it raises (`act_equiv.oracle.verdict.FindingKind`)."""
    run: str
    """`module:attr` of what runs it: a `CompiledForm`-like wrapper, or a `DeployedForm` subclass."""
    requires: tuple[str, ...] = ()
    """Modules it imports, checked in the side's interpreter."""
    install: str = ""
    """How to get `requires`."""
    supported: str = ""
    """`module:attr` of a predicate that must hold in the side's interpreter (a torch feature), or ""."""
    unsupported_reason: str = ""
    """What to say when `supported` does not hold."""
    dtypes: tuple[str, ...] = ("float32", "float64")
    autocast: bool = False
    """Whether it runs under `--autocast` (a deployment export is float32)."""

    @property
    def deployment(self) -> bool:
        return self.name != "compiled"

    def runs_in(self, training: bool) -> bool:
        return ("train" if training else "eval") in self.modes


FORMS: dict[str, Form] = {form.name: form for form in (
    Form("compiled", "torch.compile of the model level (backend, mode and dynamic from the settings), proven to run "
         "compiled code; eval cases also at further batch sizes", ("eval", "train"), "compiled", True,
         "compiled_raised", "act_equiv.run.compiled:CompiledForm", autocast=True),
    Form("exported", "torch.export.export with a dynamic batch, run through ExportedProgram.module()", ("eval",),
         "exported", False, "export_raised", "act_equiv.run.deployed:ExportedForm"),
    Form("onnx", "torch.onnx.export (dynamo or TorchScript exporter), run by onnxruntime's CPU provider", ("eval",),
         "onnx", True, "export_raised", "act_equiv.run.deployed:OnnxForm",
         requires=("onnx", "onnxruntime", "onnxscript"), install=EXPORT_EXTRA, dtypes=("float32",)),
    Form("aoti", "an AOTInductor package of the exported program, loaded and run", ("eval",), "aoti", True,
         "export_raised", "act_equiv.run.deployed:AotiForm", supported="act_equiv.compat:aoti_supported",
         unsupported_reason="the aoti form needs torch >= 2.6 (AOTInductor packages)"),
)}
"""Every form, by name, in the order runs and reports list them."""

COMPILED = "compiled"
DEPLOYED: tuple[str, ...] = tuple(name for name, form in FORMS.items() if form.deployment)


def missing(name: str) -> str | None:
    """Why form `name` cannot run in this interpreter (a missing package or torch feature), or None. Evaluated
    where the side runs: a worker answers for its own interpreter."""
    form = FORMS[name]
    absent = [module for module in form.requires if importlib.util.find_spec(module) is None]
    if absent:
        return f"the {name} form needs {', '.join(absent)}: {form.install}"
    if form.supported:
        module, attr = form.supported.split(":")
        if not getattr(importlib.import_module(module), attr)():
            return f"{form.unsupported_reason}; this is torch {importlib.metadata.version('torch')}"
    return None


def load(name: str) -> type:
    """The run function (class) of form `name`, imported on demand."""
    module, attr = FORMS[name].run.split(":")
    return getattr(importlib.import_module(module), attr)
