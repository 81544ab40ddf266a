"""Runs one case through every form and records what each produced. It judges nothing.

Forms: the legacy reference (eager), the target (eager, twice: eager must be deterministic before anything
is compared with it), the target compiled, and, when the settings ask for it, a float64 run (the reference for
the fp64-referenced check): the target's own, or the legacy model's where the target cannot run in float64.
In eval the compiled form is also called at further batch sizes, each beside the eager target at that size, and
the deployment forms the settings ask for (`act_equiv.run.deployed`) at those sizes and at batch 1, one export each.
Each run goes through `Probe` (model forward + policy loss) so one compiled graph covers both, and in
training every parameter's gradient is recorded too.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from act_equiv import compat
from act_equiv.case import Case, make_batch
from act_equiv.config import ACTION, ACTION_IS_PAD, ACTConfig
from act_equiv.models import ACTPolicy, LegacyACT, build
from act_equiv.run import numerics
from act_equiv.run.compiled import CompiledForm
from act_equiv.run.deployed import DeployedForm, DeploymentModule, deploy, deployment_inputs
from act_equiv.run.records import CaseRun, ErrorRecord, Outputs, RunSettings, batch_suffix
from act_equiv.targets.target import Target


class Probe(nn.Module):
    """Model forward plus policy loss as one function, returning every output by name."""

    def __init__(self, config: ACTConfig, model: nn.Module) -> None:
        super().__init__()
        self.policy = ACTPolicy(config, model)

    def forward(self, batch: dict[str, Any]) -> Outputs:
        output = self.policy.model(batch)
        actions, (mu, log_sigma_x2) = output
        outputs = {"actions": actions, "mu": mu, "log_sigma_x2": log_sigma_x2}
        if ACTION in batch:  # inference batches carry no actions, so there is no loss to compute
            loss, terms = self.policy.loss(batch, output)
            outputs.update(loss=loss, **terms)
        return outputs


class Runner:
    """Runs cases for one target and one setting; keeps compiled graphs while the structure repeats."""

    def __init__(self, target: Target, settings: RunSettings) -> None:
        self.target = target
        self.settings = settings
        self._structure: str | None = None
        self._explained: dict[str, dict[str, Any]] = {}
        self._deployments: dict[str, tuple[str, DeployedForm, int]] = {}
        """Per deployment form, the latest structure's export: (structure key, form, weight seed of the weights it
        holds; the weights are the legacy model's of that seed, loaded strictly)."""

    def run_eager(self, case: Case) -> CaseRun:
        """The legacy reference and the target, eager (cheap: a diverging target is caught before compiling)."""
        start = time.perf_counter()
        run = CaseRun(case, self.settings)
        run.skipped = self.target.unsupported(case.config)
        if run.skipped is None:
            with numerics.pinned(self.settings.device):
                self._run_forms(run)
        run.seconds = time.perf_counter() - start
        return run

    def run_compiled(self, run: CaseRun) -> None:
        """Measure graph breaks (if asked), add the compiled target and, for inductor, the float64 reference."""
        if "target_repeat" not in run.forms:
            return
        start = time.perf_counter()
        with numerics.pinned(self.settings.device):
            self._run_compiled(run)
        run.seconds += time.perf_counter() - start

    def _run_compiled(self, run: CaseRun) -> None:
        s, target, batch = self.settings, run.live["target"], run.live["batch"]
        if s.explain:
            self._explain(run, run.live["reference"], target, batch)
        if s.backend is not None:
            self._compiled(run, target)
        if s.forms and not run.case.training:
            self._deployed(run, target)
        if s.reference64 and ("compiled" in run.forms or run.deployed_sizes):
            self._reference64(run)

    def _reference64(self, run: CaseRun) -> None:
        """The exact answer at every batch size the compiled form ran: full precision, no autocast, the float32 run's
        random draws. The target's own float64 run where it has one; else the legacy model's (an exact reference for
        the target too once the two agree bitwise in float32, which the oracle checks before it uses it)."""
        for form, model in (("reference64", run.live["target"]), ("legacy64", run.live["reference"])):
            outputs = self._guarded(run, form, lambda m=model: self._call64(run.case, m, run.live["batches"]))
            if outputs is not None:
                run.forms.update({form + batch_suffix(run.case, size): out for size, out in outputs.items()})
                return

    def _call64(self, case: Case, model: nn.Module, batches: dict[int, dict[str, Any]]) -> dict[int, Outputs]:
        """One float64 copy of `model`, called at each batch size: outputs by batch size."""
        model64 = copy.deepcopy(model).to(torch.float64)
        probe = Probe(case.config, model64)
        sampling = numerics.float32_sampling() if self.settings.torch_dtype != torch.float64 else nullcontext()
        with sampling:
            return {size: self._call(case, probe, model64, cast_batch(batch, torch.float64), autocast=False)
                    for size, batch in batches.items()}

    def run(self, case: Case) -> CaseRun:
        run = self.run_eager(case)
        self.run_compiled(run)
        return run

    # -- forms --------------------------------------------------------------------------------------
    def _run_forms(self, run: CaseRun) -> None:
        case, s = run.case, self.settings
        reference = build(case.config, case.weight_seed, LegacyACT).to(s.device, s.torch_dtype)
        state = reference.state_dict()
        batch = self._batch(case, case.batch.batch_size)
        run.features = {**case.features(), "padding": ACTION_IS_PAD in batch and bool(batch[ACTION_IS_PAD].any())}
        run.forms["legacy"] = self._call(case, Probe(case.config, reference), reference, batch)
        target = self._guarded(run, "build", lambda: self.target.factory(case.config).to(s.device, s.torch_dtype))
        if target is None or self._guarded(run, "load_state_dict", lambda: self._load(run, target, state)) is None:
            return
        probe = Probe(case.config, target)
        for name in ("target", "target_repeat"):
            outputs = self._guarded(run, name, lambda: self._call(case, probe, target, batch))
            if outputs is None:
                return
            run.forms[name] = outputs
        run.live = {"reference": reference, "target": target, "batch": batch}

    @staticmethod
    def _load(run: CaseRun, target: nn.Module, state: dict[str, torch.Tensor]) -> bool:
        """Load the reference weights strictly; a different key set is recorded as the layout change it is."""
        keys = set(target.state_dict())
        if keys != set(state):
            run.layout = {"missing": sorted(set(state) - keys), "unexpected": sorted(keys - set(state))}
        target.load_state_dict(state, strict=True)
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
            return None

    def _call(self, case: Case, fn: Callable[[dict[str, Any]], Outputs], model: nn.Module,
              batch: dict[str, Any], autocast: bool = True) -> Outputs:
        """Seed, run in the case's mode (eval under no_grad, as inference runs) and the settings' autocast,
        collect grads in training (backward outside autocast, as torch.amp recommends)."""
        s = self.settings
        model.to(s.device).train(case.training)
        for p in model.parameters():
            p.grad = None
        torch.manual_seed(case.weight_seed + 1)
        with torch.set_grad_enabled(case.training):
            with numerics.autocast(s.device, s.autocast if autocast else None):
                outputs = dict(fn(batch))
            if case.training:
                outputs["loss"].backward()
                outputs.update({f"grad/{n}": p.grad for n, p in model.named_parameters() if p.requires_grad})
        return {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in outputs.items()}

    def _compiled(self, run: CaseRun, target: nn.Module) -> None:
        s, case = self.settings, run.case
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
            outputs = self._guarded(run, "compiled", lambda: self._call(case, form, target, run.live["batch"]))
            if outputs is None:
                return
            run.forms["compiled"] = outputs
            run.batch_sizes = [case.batch.batch_size]
            run.live["batches"] = {case.batch.batch_size: run.live["batch"]}
            if case.training:
                return
            for size in further_batch_sizes(case.batch.batch_size, s.extra_batch_sizes):
                other = self._batch(case, size)
                compiled = self._guarded(run, f"compiled@batch{size}",
                                         lambda b=other: self._call(case, form, target, b))
                if compiled is None:
                    return
                eager = self._guarded(run, f"target@batch{size}", lambda b=other: self._call(case, probe, target, b))
                if eager is None:
                    return
                run.forms[f"compiled@batch{size}"], run.forms[f"target@batch{size}"] = compiled, eager
                run.batch_sizes.append(size)
                run.live["batches"][size] = other

    def _deployed(self, run: CaseRun, target: nn.Module) -> None:
        """Each deployment form beside the eager target at every size in `deployed_sizes`, from one export."""
        case = run.case
        batches = run.live.setdefault("batches", {case.batch.batch_size: run.live["batch"]})
        sizes = deployed_sizes(case.batch.batch_size, self.settings.extra_batch_sizes)
        probe = Probe(case.config, target)
        for size in sizes:
            batches.setdefault(size, self._batch(case, size))
            name = "target" + batch_suffix(case, size)
            if name not in run.forms:
                eager = self._guarded(run, name, lambda b=batches[size]: self._call(case, probe, target, b))
                if eager is None:
                    return
                run.forms[name] = eager
        run.deployed_sizes = sizes
        module = DeploymentModule(case.config, target)
        for form in self.settings.forms:
            deployed = self._guarded(run, f"export:{form}", lambda f=form: self._deployment(run, f, module))
            for size in sizes if deployed is not None else ():
                inputs = deployment_inputs(case.config, batches[size])
                name = form + batch_suffix(case, size)
                outputs = self._guarded(run, name, lambda i=inputs, d=deployed: {"actions": _infer(d, i)})
                if outputs is None:
                    break
                run.forms[name] = outputs

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

    def _explain(self, run: CaseRun, reference: nn.Module, target: nn.Module, batch: dict[str, Any]) -> None:
        """Graph count and breaks of each eager form, measured once per structure and mode (reported)."""
        case = run.case
        key = f"{case.structure_key()}/{case.training}"
        if key not in self._explained:
            self._explained[key] = {}
            for name, model in (("legacy", reference), ("target", target)):
                model.train(case.training)
                with numerics.autocast(self.settings.device, self.settings.autocast):
                    result = self._guarded(run, f"explain:{name}",
                                           lambda m=model: compat.explain(Probe(case.config, m), batch))
                self._explained[key][name] = None if result is None else dataclasses.asdict(result)
            compat.reset()
            self._structure = None
        run.explain = self._explained[key]


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


def cast_batch(batch: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    """The same batch cast to `dtype` (bool masks untouched)."""

    def cast(value: Any) -> Any:
        if isinstance(value, list):
            return [cast(v) for v in value]
        return value.to(dtype) if value.is_floating_point() else value

    return {key: cast(value) for key, value in batch.items()}
