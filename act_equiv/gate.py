"""The gate: two sides under one `Settings`, and the oracle's verdict on a case. Used by `act-equiv check` (through
the stages of `act_equiv.stages`), by the pytest suite and by the mutant run.

Opening a gate opens its sides, each in this process or in a worker process (`open_side`), so a gate is a context
manager: leaving it ends the workers.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from act_equiv import compat, forms
from act_equiv.baseline import Baseline
from act_equiv.case import Case
from act_equiv.errors import UsageError
from act_equiv.oracle.judge import judge
from act_equiv.oracle.tolerance import tolerance_for
from act_equiv.oracle.verdict import CaseVerdict
from act_equiv.run.concurrent import at_once
from act_equiv.run.environment import gate_environment
from act_equiv.run.numerics import AUTOCAST_DTYPES, DTYPES
from act_equiv.run.runner import Runner
from act_equiv.run.side import InProcessSide, Side
from act_equiv.run.worker import WorkerSide
from act_equiv.settings import Settings
from act_equiv.targets import Factory, Target, resolve
from act_equiv.targets.revision import is_revision, materialize

__all__ = ["INDUCTOR_CACHE", "Gate", "SideSpec", "autocast_dtypes", "check_supported", "in_worker", "open_side"]

INDUCTOR_CACHE = "TORCHINDUCTOR_CACHE_DIR"

SideSpec = str | Target | Factory
"""A side as a gate takes it: a spec (`act_equiv.targets.resolve`, `lerobot@REV`), or a target object or factory
(`ACTConfig -> nn.Module`) that runs in this process."""


class Gate:
    """Two sides and the settings they run under: `Gate(settings)`, or `Gate(**keywords)` with `Settings`' keywords,
    where `reference`/`target` may also be a `Target` or a factory. Use it as a context manager (or call `close()`):
    opening starts the worker processes of sides that run in one."""

    def __init__(self, settings: Settings | None = None, *, reference: SideSpec | None = None,
                 target: SideSpec | None = None, **keywords: Any) -> None:
        objects = {role: _as_target(spec) for role, spec in (("reference", reference), ("target", target))
                   if spec is not None and not isinstance(spec, str)}
        specs = {role: spec if isinstance(spec, str) else objects[role].name
                 for role, spec in (("reference", reference), ("target", target)) if spec is not None}
        if settings is None:
            settings = Settings(**specs, **keywords)
        elif specs or keywords:
            settings = settings.replace(**specs, **keywords)
        check_supported(settings)
        self.settings = settings.replace(reference64=_needs_reference64(settings))
        self.known = Baseline.load(settings.baseline) if settings.baseline is not None else None
        s = self.settings
        # Both sides open at once where one runs in a worker (each worker imports its side: seconds).
        sides = (("reference", s.reference, s.reference_python), ("target", s.target, s.target_python))
        opened = at_once([(lambda role=role, spec=spec, python=python: open_side(
            objects.get(role, spec), s, python, s.lerobot_repo, role), role not in objects and in_worker(spec, python))
            for role, spec, python in sides])
        for outcome in opened:
            if outcome.error is not None:
                for other in opened:
                    if other.error is None:
                        other.value.close()
                raise outcome.error
        self.runner = Runner(opened[0].value, opened[1].value, s)
        try:
            self._check_target_forms()
        except BaseException:
            self.runner.close()
            raise

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the sides' worker processes (a gate without workers has nothing to end)."""
        self.runner.close()

    def forms_line(self) -> str:
        """Which forms run on which side, and where: `forms: reference eager (worker); target eager, compiled
        (aot_eager), exported (worker)`."""
        s = self.settings
        target = ["eager", *(f"compiled ({s.backend}" + (f" {s.mode})" if s.mode else ")") if form == forms.COMPILED
                             else form for form in s.forms)]

        def where(side: Side) -> str:
            return "in process" if side.environment()["process"] == "in-process" else "worker"

        return (f"forms: reference eager ({where(self.runner.reference)}); target {', '.join(target)} "
                f"({where(self.runner.target)})")

    def _check_target_forms(self) -> None:
        """Every form asked for can run where the target runs (its worker's interpreter answers for itself): else a
        usage error naming what to install there, before any case runs."""
        missing = self.runner.target.missing_forms()
        if missing:
            form, reason = next(iter(missing.items()))
            python = self.settings.target_python
            where = f" (the target runs on {python}: install it there)" if python else ""
            raise UsageError(f"forms={form!r}: {reason}{where}", "forms", "target_python")

    def verdict(self, case: Case, compiled: bool = True) -> CaseVerdict:
        """Eager forms first; the compiled stage only when they agree (a divergence needs no compile)."""
        run = self.runner.run_eager(case)
        verdict = self._accept(judge(run, strict=self.settings.strict))
        if verdict.passed and compiled:
            self.runner.run_compiled(run)
            verdict = self._accept(judge(run, strict=self.settings.strict))
        return verdict

    def _accept(self, verdict: CaseVerdict) -> CaseVerdict:
        """The verdict with the failures the baseline knows accepted (every failure, when recording findings)."""
        if self.settings.record_findings:
            verdict.accepted = frozenset(signature for signature, _ in verdict.failure_lines())
        elif self.known is not None:
            verdict.accepted = self.known.signatures
        return verdict

    def environment(self) -> dict[str, Any]:
        """What a report states about this gate's run (`act_equiv.run.environment`)."""
        return gate_environment(self.settings, {"reference": self.runner.reference.environment(),
                                                "target": self.runner.target.environment()})


def _as_target(spec: Target | Factory) -> Target:
    return spec if isinstance(spec, Target) else Target(getattr(spec, "__name__", type(spec).__name__), spec)


def check_supported(settings: Settings) -> None:
    """What this interpreter's torch cannot do of `settings`, as a usage error before any side opens: a CUDA device,
    an autocast dtype on the device, the dynamo onnx exporter. (A form's packages are asked where the target runs.)"""
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device='cuda': no CUDA device is available to this torch build", "device")
    if settings.autocast is not None and not compat.autocast_supported(settings.device,
                                                                        AUTOCAST_DTYPES[settings.autocast]):
        raise UsageError(f"autocast={settings.autocast!r} is not supported on device={settings.device!r} by torch "
                         f"{torch.__version__}; supported here: {autocast_dtypes(settings.device) or 'none'}",
                         "autocast", "device")
    if "onnx" in settings.forms and settings.onnx_exporter == "dynamo" and not compat.onnx_dynamo_supported():
        raise UsageError(f"onnx_exporter='dynamo' needs torch >= 2.5 (this is {torch.__version__}); use "
                         "'torchscript'", "onnx_exporter")


def _needs_reference64(settings: Settings) -> bool:
    """Whether any compiled tolerance of these settings may fall back to the fp64-referenced check."""
    dtype = DTYPES[settings.dtype]
    if any(forms.FORMS[form].float64_evidence and tolerance_for(forms.FORMS[form].tolerance, dtype).rmse_factor
           is not None for form in settings.deployed_forms):
        return True
    if settings.backend is None:
        return False
    return any(tolerance_for("compiled", dtype, settings.backend, autocast=settings.autocast, training=training,
                             gradient=gradient).rmse_factor is not None
               for training in (False, True) for gradient in (False, True))


def in_worker(spec: str, python: str | None) -> bool:
    """Whether `open_side` runs this side in a worker process."""
    return is_revision(spec) or python is not None


def open_side(spec: str | Target, settings: Settings, python: str | None = None, lerobot_repo: str | None = None,
              setting: str = "target", timeout: float | None = None) -> Side:
    """The side for `spec`: in this process (`InProcessSide`; always for a `Target`) unless it must run in a worker
    (`WorkerSide`): a LeRobot git revision (`lerobot@REV`, materialised by `act_equiv.targets.revision`), or any spec
    on another `python`. `setting` names the option the spec came from ("reference" or "target"), for error
    messages; `timeout` is a worker's per-request limit (default: the settings')."""
    if isinstance(spec, Target):
        return InProcessSide(spec, settings)
    if not in_worker(spec, python):
        return InProcessSide(resolve(spec), settings)
    worker = {"python": python, "setting": setting,
              "timeout": settings.worker_timeout if timeout is None else timeout}
    if not is_revision(spec):
        return WorkerSide(spec, settings, **worker)
    try:
        revision = materialize(spec, lerobot_repo)
    except UsageError as error:
        raise UsageError(str(error), setting, *error.settings) from None
    about = {"revision": revision.describe(), "commit": revision.commit, "content": revision.content,
             "layout": revision.layout}
    # A revision's compiled graphs are cached beside its extracted package, so the next run of the same commit (or
    # the same WORKTREE content) reuses inductor's work; a TORCHINDUCTOR_CACHE_DIR set by the user wins.
    inductor = {INDUCTOR_CACHE: os.environ.get(INDUCTOR_CACHE,
                                               str(revision.root.with_name(revision.root.name + ".inductor")))}
    return WorkerSide("lerobot", settings, paths=(str(revision.root),), label=spec, **worker, env=inductor,
                      open_keywords={"policies": revision.policies_package,
                                     "about": {**about, "inductor_cache": inductor[INDUCTOR_CACHE]}})


def autocast_dtypes(device: str) -> list[str]:
    """The `--autocast` values this torch really applies on `device`."""
    return [name for name, dtype in AUTOCAST_DTYPES.items() if compat.autocast_supported(device, dtype)]

