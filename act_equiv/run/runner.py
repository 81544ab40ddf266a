"""Runs one case through every form of two sides and records what each produced. It judges nothing.

Sides (`act_equiv.run.side`): the reference (by default act_equiv's frozen legacy model) and the target, each in
this process or in a worker. Forms: the reference and the target at the model level (the target twice: eager must
be deterministic before anything is compared with it) and at the policy level; where the two differ at all, both
again in float64 (the evidence that tells rounding from divergence); the target compiled, and, when the settings
ask for it, a float64 run beside it (the fp64-referenced check): the target's own, or the reference's where the
target cannot run in float64. In eval the compiled form is also called at further batch sizes, each beside the
eager target at that size, and the deployment forms the settings ask for (`act_equiv.run.deployed`) at those sizes
and at batch 1, one export each. Compiled and deployment forms need the target in this process.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from act_equiv import compat
from act_equiv.case import Case, make_batch
from act_equiv.config import ACTION_IS_PAD
from act_equiv.models import ACTPolicy
from act_equiv.run import numerics
from act_equiv.run.compiled import CompiledForm
from act_equiv.run.deployed import DeployedForm, DeploymentModule, deploy, deployment_inputs
from act_equiv.run.records import CaseRun, ErrorRecord, Outputs, RunSettings, batch_suffix
from act_equiv.run.side import Probe, Side

OWN_POLICY = f"{ACTPolicy.__module__}.{ACTPolicy.__qualname__}"
"""How a side's environment names act_equiv's own policy."""
_FAILED = object()
"""What `_guarded` returns when the call raised (its error is recorded)."""


class Runner:
    """Runs cases for two sides and one setting; keeps compiled graphs while the structure repeats."""

    def __init__(self, reference: Any, target: Any, settings: RunSettings) -> None:
        self.reference = reference
        self.target = target
        self.settings = settings
        self._structure: str | None = None
        self._explained: dict[str, dict[str, Any]] = {}
        self._deployments: dict[str, tuple[str, DeployedForm, int]] = {}
        """Per deployment form, the latest structure's export: (structure key, form, weight seed of the weights it
        holds; the weights are the reference's of that seed, loaded strictly)."""

    @property
    def rollout_only(self) -> bool:
        """Both sides use act_equiv's `ACTPolicy`, whose loss and chunk the model level already compares."""
        return self.reference.policy_name == self.target.policy_name == OWN_POLICY

    @property
    def compiles(self) -> bool:
        """Whether compiled forms can run: they need the target's module in this process."""
        return isinstance(self.target, Side)

    def close(self) -> None:
        """End the sides' worker processes, if any."""
        self.reference.close()
        self.target.close()

    def run_eager(self, case: Case) -> CaseRun:
        """Both sides at the model and policy level, eager (cheap: a divergence is caught before compiling)."""
        start = time.perf_counter()
        run = CaseRun(case, self.settings)
        with numerics.pinned(self.settings.device):
            for role, side in (("reference", self.reference), ("target", self.target)):
                reason = self._guarded(run, f"{role}:unsupported", lambda s=side: s.unsupported(case.config))
                if reason is not _FAILED and reason is not None:
                    run.unsupported = {"side": role, "spec": side.spec, "reason": reason}
                    break
            if run.unsupported is None and not run.errors:
                self._run_forms(run)
        run.seconds = time.perf_counter() - start
        return run

    def run_compiled(self, run: CaseRun) -> None:
        """Measure graph breaks (if asked), add the compiled target and, for inductor, the float64 reference."""
        if "target_repeat" not in run.forms or not self.compiles:
            return
        start = time.perf_counter()
        with numerics.pinned(self.settings.device):
            self._run_compiled(run)
        run.seconds += time.perf_counter() - start

    def _run_compiled(self, run: CaseRun) -> None:
        s, batch = self.settings, run.live["batch"]
        if s.explain:
            self._explain(run, batch)
        if s.backend is not None:
            self._compiled(run)
        if s.forms and not run.case.training:
            self._deployed(run)
        if s.reference64 and ("compiled" in run.forms or run.deployed_sizes):
            self._float64(run, run.live["batches"])

    def _float64(self, run: CaseRun, batches: dict[int, dict[str, Any]]) -> None:
        """The exact answer at each batch size: full precision, no autocast, the float32 run's random draws. The
        target's own float64 run; if it cannot run in float64, the reference's (an exact reference for the target
        too once the two agree bitwise in float32, which the oracle checks before it uses it)."""
        case = run.case
        outputs = self._guarded(run, "compiled:target64", lambda: self.target.call64(case, batches))
        form = "target64"
        if outputs is _FAILED:
            outputs = self._guarded(run, "compiled:reference64", lambda: self.reference.call64(case, batches))
            form = "reference64"
        if outputs is not _FAILED:
            run.forms.update({form + batch_suffix(case, size): out for size, out in outputs.items()})

    def run(self, case: Case) -> CaseRun:
        run = self.run_eager(case)
        self.run_compiled(run)
        return run

    # -- forms --------------------------------------------------------------------------------------
    def _run_forms(self, run: CaseRun) -> None:
        case, reference, target = run.case, self.reference, self.target
        batch = self._batch(case, case.batch.batch_size)
        run.features = {**case.features(), "padding": ACTION_IS_PAD in batch and bool(batch[ACTION_IS_PAD].any())}
        state = self._guarded(run, "reference:build", lambda: reference.build(case))
        if state is _FAILED:
            # Nothing to load into the target; whether its own build raises alike tells "raised" from "raised-both".
            self._guarded(run, "build", lambda: target.build(case))
            return
        self._form(run, "reference", "reference:forward", lambda: reference.call(case, batch))
        layout = self._guarded(run, "build", lambda: target.load(case, state))
        if layout is _FAILED:
            return
        if layout is not None:
            run.layout = layout
            return
        for name in ("target", "target_repeat"):
            if not self._form(run, name, "forward" if name == "target" else name, lambda: target.call(case, batch)):
                break
        self._form(run, "reference_policy", "reference:policy",
                   lambda: reference.policy(case, rollout_only=self.rollout_only))
        self._form(run, "target_policy", "policy", lambda: target.policy(case, rollout_only=self.rollout_only))
        self._evidence(run, batch)
        run.live = {"reference": getattr(reference, "model", None), "target": getattr(target, "model", None),
                    "batch": batch}

    def _evidence(self, run: CaseRun, batch: dict[str, Any]) -> None:
        """Where a pair is not bitwise equal, both sides again in float64: whether they then agree to float64
        rounding is what tells a rounding-only change from a divergence (the oracle decides)."""
        case, forms, size = run.case, run.forms, run.case.batch.batch_size
        if {"reference", "target"} <= forms.keys() and not identical(forms["reference"], forms["target"]):
            for role, side in (("reference", self.reference), ("target", self.target)):
                outputs = self._guarded(run, f"{role}64", lambda s=side: s.call64(case, {size: batch}))
                if outputs is not _FAILED:
                    forms[f"{role}64"] = outputs[size]
        if {"reference_policy", "target_policy"} <= forms.keys() and not identical(forms["reference_policy"],
                                                                                      forms["target_policy"]):
            for role, side in (("reference", self.reference), ("target", self.target)):
                self._form(run, f"{role}_policy64", f"{role}_policy64",
                           lambda s=side: s.policy(case, float64=True, rollout_only=self.rollout_only))

    def _form(self, run: CaseRun, name: str, stage: str, fn: Callable[[], Outputs]) -> bool:
        outputs = self._guarded(run, stage, fn)
        if outputs is _FAILED:
            return False
        run.forms[name] = outputs
        return True

    def _batch(self, case: Case, size: int) -> dict[str, Any]:
        return make_batch(case.config, case.batch.with_batch_size(size), self.settings.device,
                          self.settings.torch_dtype)

    @staticmethod
    def _guarded(run: CaseRun, stage: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as error:
            run.errors.append(ErrorRecord.capture(stage, error))
            return _FAILED

    def _compiled(self, run: CaseRun) -> None:
        s, case, side, target = self.settings, run.case, self.target, run.live["target"]
        # A new structure starts from a clean dynamo. So does every fresh model where dynamo guards on module
        # instances (torch 2.2): each one compiles its own graph anyway, and a few cases of one structure would
        # otherwise reach the recompile limit and run eagerly.
        probe = Probe(case.config, target)
        if self._structure != case.structure_key() or not compat.fresh_modules_share_graphs():
            compat.reset()
            compat.clear_skip_marks(probe)
            self._structure = case.structure_key()
        form = CompiledForm(probe, backend=s.backend, mode=s.mode, dynamic=s.dynamic, fullgraph=True)
        run.compile_stats = form.stats
        with compat.fallback_random():
            if not self._form(run, "compiled", "compiled", lambda: side.invoke(case, form, target, run.live["batch"])):
                return
            run.batch_sizes = [case.batch.batch_size]
            run.live["batches"] = {case.batch.batch_size: run.live["batch"]}
            if case.training:
                return
            for size in further_batch_sizes(case.batch.batch_size, s.extra_batch_sizes):
                other = self._batch(case, size)
                if not (self._form(run, f"compiled@batch{size}", f"compiled@batch{size}",
                                   lambda b=other: side.invoke(case, form, target, b))
                        and self._form(run, f"target@batch{size}", f"target@batch{size}",
                                       lambda b=other: side.invoke(case, probe, target, b))):
                    return
                run.batch_sizes.append(size)
                run.live["batches"][size] = other

    def _deployed(self, run: CaseRun) -> None:
        """Each deployment form beside the eager target at every size in `deployed_sizes`, from one export."""
        case, side, target = run.case, self.target, run.live["target"]
        batches = run.live.setdefault("batches", {case.batch.batch_size: run.live["batch"]})
        sizes = deployed_sizes(case.batch.batch_size, self.settings.extra_batch_sizes)
        probe = Probe(case.config, target)
        for size in sizes:
            batches.setdefault(size, self._batch(case, size))
            name = "target" + batch_suffix(case, size)
            if name not in run.forms and not self._form(run, name, name,
                                                        lambda b=batches[size]: side.invoke(case, probe, target, b)):
                return
        run.deployed_sizes = sizes
        module = DeploymentModule(case.config, target)
        for form in self.settings.forms:
            deployed = self._guarded(run, f"export:{form}", lambda f=form: self._deployment(run, f, module))
            for size in sizes if deployed is not _FAILED else ():
                inputs = deployment_inputs(case.config, batches[size])
                name = form + batch_suffix(case, size)
                if not self._form(run, name, name, lambda i=inputs, d=deployed: {"actions": _infer(d, i)}):
                    break

    def _deployment(self, run: CaseRun, form: str, module: DeploymentModule) -> DeployedForm:
        """The structure's export of `form` with this case's weights loaded, or a new export (at batch >= 2:
        torch.export specialises a dynamic dimension whose example size is 1)."""
        case, key = run.case, run.case.structure_key()
        cached = self._deployments.get(form)
        if cached is not None and cached[0] == key and (cached[2] == case.weight_seed or cached[1].load(module)):
            self._deployments[form] = (key, cached[1], case.weight_seed)
            run.deployed[form] = {"example_batch": cached[1].example_batch, "exported": False}
            return cached[1]
        self._deployments.pop(form, None)
        example = deployment_inputs(case.config, self._batch(case, max(case.batch.batch_size, 2)))
        deployed = deploy(form, module, example, self.settings.onnx_exporter)
        self._deployments[form] = (key, deployed, case.weight_seed)
        run.deployed[form] = {"example_batch": deployed.example_batch, "exported": True,
                              "export_seconds": round(deployed.export_seconds, 3)}
        return deployed

    def _explain(self, run: CaseRun, batch: dict[str, Any]) -> None:
        """Graph count and breaks of each eager form in this process, measured once per structure and mode."""
        case = run.case
        key = f"{case.structure_key()}/{case.training}"
        if key not in self._explained:
            self._explained[key] = {}
            for name in ("reference", "target"):
                model = run.live[name]
                if model is None:
                    continue
                model.train(case.training)
                with numerics.autocast(self.settings.device, self.settings.autocast):
                    result = self._guarded(run, f"explain:{name}",
                                           lambda m=model: compat.explain(Probe(case.config, m), batch))
                self._explained[key][name] = None if result is _FAILED else dataclasses.asdict(result)
            compat.reset()
            self._structure = None
        run.explain = self._explained[key]


def identical(expected: Outputs, actual: Outputs) -> bool:
    """Whether two forms' outputs are the same bits: the same names, shapes, dtypes and values (NaN equal to NaN)."""
    if expected.keys() != actual.keys():
        return False
    for name, value in expected.items():
        other = actual[name]
        if not isinstance(value, torch.Tensor) or not isinstance(other, torch.Tensor):
            if (value is None) != (other is None):
                return False
            continue
        if value.shape != other.shape or value.dtype != other.dtype:
            return False
        if not bool(((value == other) | (value.isnan() & other.isnan())).all()):
            return False
    return True
def further_batch_sizes(batch_size: int, extra: int) -> range:
    """The `extra` sizes beyond the case's (and beyond 2) at which the compiled and deployment forms run again."""
    first = max(batch_size, 2)
    return range(first + 1, first + 1 + extra)


def deployed_sizes(batch_size: int, extra: int) -> list[int]:
    """Where deployment forms run: the case's batch size, 1 (the robot loop) and the further sizes."""
    return list(dict.fromkeys([batch_size, 1, *further_batch_sizes(batch_size, extra)]))


def _infer(deployed: DeployedForm, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    with torch.no_grad():
        return deployed(inputs).detach()
