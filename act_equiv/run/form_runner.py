"""Runs the forms (`act_equiv.forms.FORMS`) of one side's module, in the process that owns it, and records them.

A side in a worker (a LeRobot revision, another interpreter) compiles and exports its own module there, as an
in-process side does here: the compiled form proves it ran compiled code and counts graph breaks and recompiles,
runs at the further batch sizes beside the eager module at each size, and each deployment form is exported once
per structure and called at every size it must serve. What it produced travels back as a `FormsRecord`, which the
oracle judges exactly as it judges an in-process target's. It judges nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from act_equiv import compat, forms
from act_equiv.case import Case
from act_equiv.run import numerics
from act_equiv.run.deployed import DeployedForm, DeploymentModule, deploy, deployment_inputs
from act_equiv.run.probe import Probe
from act_equiv.run.records import FAILED, FormsRecord, Outputs, batch_suffix, guarded, record_outputs
from act_equiv.settings import Settings

__all__ = ["FormRunner", "ModelSide", "deployed_sizes", "further_batch_sizes"]


class ModelSide(Protocol):
    """What running a side's forms needs of it (`act_equiv.run.side.InProcessSide`): its settings, its built or loaded
    model, its batches and the call that runs a form in the case's mode."""

    settings: Settings
    model: nn.Module

    def batch(self, case: Case, size: int) -> dict[str, Any]: ...

    def invoke(self, case: Case, fn: Callable[[dict[str, Any]], Outputs], model: nn.Module,
               batch: dict[str, Any], autocast: bool = True) -> Outputs: ...


class FormRunner:
    """One side's forms; keeps the compiled structure, its explanations and exports while the structure repeats."""

    def __init__(self) -> None:
        self._structure: str | None = None
        self._explained: dict[str, dict[str, Any] | None] = {}
        self._deployments: dict[str, tuple[str, DeployedForm, int]] = {}
        """Per deployment form, the latest structure's export: (structure key, form, weight seed of the weights it
        holds; the weights are the reference's of that seed, loaded strictly)."""

    def forget_graphs(self) -> None:
        """Dynamo was reset elsewhere (a compiled training trajectory): the next compiled form starts afresh."""
        self._structure = None

    def explain(self, side: ModelSide, case: Case) -> dict[str, Any] | None:
        """Graph count and breaks of the side's eager model (`torch._dynamo.explain`), once per structure and mode;
        None where the trace itself raised."""
        key = f"{case.structure_key()}/{case.training}"
        if key not in self._explained:
            model = side.model.train(case.training)
            try:
                with numerics.autocast(side.settings.device, side.settings.autocast):
                    result = compat.explain(Probe(case.config, model), side.batch(case, case.batch.batch_size))
                self._explained[key] = dataclasses.asdict(result)
            except Exception:
                self._explained[key] = None
            compat.reset()
            self._structure = None
        return self._explained[key]

    def run(self, side: ModelSide, case: Case) -> FormsRecord:
        """Every form the settings ask for that runs in the case's mode."""
        s, record = side.settings, FormsRecord()
        if s.backend is not None and forms.FORMS[forms.COMPILED].runs_in(case.training):
            self._compiled(side, case, record)
        deployed = [form for form in s.deployed_forms if forms.FORMS[form].runs_in(case.training)]
        if deployed:
            self._deployed(side, case, record, deployed)
        return record

    def _compiled(self, side: ModelSide, case: Case, record: FormsRecord) -> None:
        s, model = side.settings, side.model
        # A new structure starts from a clean dynamo. So does every fresh model where dynamo guards on module
        # instances (torch 2.2): each one compiles its own graph anyway, and a few cases of one structure would
        # otherwise reach the recompile limit and run eagerly.
        probe = Probe(case.config, model)
        if self._structure != case.structure_key() or not compat.fresh_modules_share_graphs():
            compat.reset()
            compat.clear_skip_marks(probe)
            self._structure = case.structure_key()
        form = forms.load(forms.COMPILED)(probe, backend=s.backend, mode=s.mode, dynamic=s.dynamic, fullgraph=True)
        record.compile_stats = form.stats
        size = case.batch.batch_size
        first: Callable[[dict[str, Any]], Outputs] = form
        if not case.training and s.dynamic is None and size >= 2:
            # The further sizes follow: one graph dynamic in the batch from the first call (dynamo's automatic
            # dynamic would compile a static graph first, then this one). Size 1 keeps its static graph: dynamo
            # specialises sizes 0 and 1, and a robot loop runs at batch 1.
            def first(batch: dict[str, Any]) -> Outputs:
                return form(compat.mark_batch_dynamic(batch))
        with compat.fallback_random():
            if not record_outputs(record, "compiled", "compiled",
                               lambda: side.invoke(case, first, model, side.batch(case, size)), forms.COMPILED):
                return
            record.batch_sizes = [size]
            if case.training:
                return
            for size in further_batch_sizes(case.batch.batch_size, s.extra_batch_sizes):
                other = side.batch(case, size)
                if not (record_outputs(record, f"compiled@batch{size}", f"compiled@batch{size}",
                                    lambda b=other: side.invoke(case, form, model, b), forms.COMPILED)
                        and record_outputs(record, f"target@batch{size}", f"target@batch{size}",
                                        lambda b=other: side.invoke(case, probe, model, b))):
                    return
                record.batch_sizes.append(size)

    def _deployed(self, side: ModelSide, case: Case, record: FormsRecord, names: list[str]) -> None:
        """Each deployment form beside the eager model at every size in `deployed_sizes`, from one export."""
        model = side.model
        sizes = deployed_sizes(case.batch.batch_size, side.settings.extra_batch_sizes)
        batches = {size: side.batch(case, size) for size in sizes}
        probe = Probe(case.config, model)
        for size in sizes:
            name = "target" + batch_suffix(case, size)
            if name not in record.outputs and not record_outputs(
                    record, name, name, lambda b=batches[size]: side.invoke(case, probe, model, b)):
                return
        record.deployed_sizes = sizes
        module = DeploymentModule(case.config, model)
        for name in names:
            exported = guarded(record, f"export:{name}",
                               lambda n=name: self._deployment(side, case, record, n, module), name)
            for size in sizes if exported is not FAILED else ():
                inputs = deployment_inputs(case.config, batches[size])
                key = name + batch_suffix(case, size)
                if not record_outputs(record, key, key, lambda i=inputs, d=exported: {"actions": _infer(d, i)}, name):
                    break

    def _deployment(self, side: ModelSide, case: Case, record: FormsRecord, name: str,
                    module: DeploymentModule) -> DeployedForm:
        """The structure's export of `name` with this case's weights loaded, or a new export (at batch >= 2:
        torch.export specialises a dynamic dimension whose example size is 1)."""
        key = case.structure_key()
        cached = self._deployments.get(name)
        if cached is not None and cached[0] == key and (cached[2] == case.weights or cached[1].load(module)):
            self._deployments[name] = (key, cached[1], case.weights)
            record.deployed[name] = {"example_batch": cached[1].example_batch, "exported": False}
            return cached[1]
        self._deployments.pop(name, None)
        example = deployment_inputs(case.config, side.batch(case, max(case.batch.batch_size, 2)))
        exported = deploy(name, module, example, side.settings.onnx_exporter)
        self._deployments[name] = (key, exported, case.weights)
        record.deployed[name] = {"example_batch": exported.example_batch, "exported": True,
                                 "export_seconds": round(exported.export_seconds, 3)}
        return exported


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
