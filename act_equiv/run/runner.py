"""Runs one case through every form of two sides and records what each produced. It judges nothing.

Sides (`act_equiv.run.side`): the reference (by default act_equiv's frozen legacy model) and the target, each in
this process or in a worker. Forms: the reference and the target at the model level (the target twice: eager must
be deterministic before anything is compared with it) and at the policy level; where the two differ at all, both
again in float64 (the evidence that tells rounding from divergence). Then the target's forms (`act_equiv.forms`:
compiled, and the deployment forms the settings ask for), run by the target side itself, in the process that owns
its module (`act_equiv.run.form_runner`), and, when a form's tolerance may need it, a float64 run at every batch
size they ran (the fp64-referenced check): the target's own, or the reference's where the target cannot run in
float64.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from act_equiv import forms
from act_equiv.case import Case
from act_equiv.config import ACTION_IS_PAD
from act_equiv.models import ACTPolicy
from act_equiv.run import numerics, training
from act_equiv.run.concurrent import Outcome, at_once
from act_equiv.run.form_runner import further_batch_sizes
from act_equiv.run.inputs import batch_at, same_bits
from act_equiv.run.records import FAILED, CaseRun, Outputs, batch_suffix, guarded, record_outputs
from act_equiv.run.side import Side, state_layout
from act_equiv.settings import Settings

OWN_POLICY = f"{ACTPolicy.__module__}.{ACTPolicy.__qualname__}"
"""How a side's environment names act_equiv's own policy."""


class Runner:
    """Runs cases for two sides and one setting."""

    def __init__(self, reference: Side, target: Side, settings: Settings) -> None:
        self.reference = reference
        self.target = target
        self.settings = settings
        self._checkpointed: dict[str, dict[str, list[str]] | None] = {}
        """Per structure, how the save_pretrained round trip between the sides failed, or None."""
        self._trained_structures: set[str] = set()
        """The structures whose training the run compiles (`_compiled_trajectories`)."""

    @property
    def rollout_only(self) -> bool:
        """Both sides use act_equiv's `ACTPolicy`, whose loss and chunk the model level already compares."""
        return self.reference.policy_name == self.target.policy_name == OWN_POLICY

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
                reason = guarded(run, f"{role}:unsupported", lambda s=side: s.unsupported(case.config))
                if reason is not FAILED and reason is not None:
                    run.unsupported = {"side": role, "spec": side.spec, "reason": reason}
                    break
            if run.unsupported is None and not run.errors:
                self._run_levels(run)
        run.seconds = time.perf_counter() - start
        return run

    def run_compiled(self, run: CaseRun) -> None:
        """The eager sides' graph breaks (if asked), the target's forms, and the float64 run the fp64-referenced
        check may need."""
        if "target_repeat" not in run.outputs:
            return
        start = time.perf_counter()
        s, case = self.settings, run.case
        with numerics.pinned(s.device):
            if s.explain and s.backend is None:  # no compiled form counts graph breaks: trace both eager sides
                self._explain(run, ("reference", "target"))
            record = guarded(run, "forms", lambda: self.target.forms(case))
            if record is not FAILED:
                record.add_to(run)
                if s.explain and any(error.kind == "graph_break" for error in record.errors):
                    self._explain(run, ("target",))  # fullgraph stops at the first break: list every one
            if s.reference64 and ("compiled" in run.outputs or run.deployed_sizes):
                sizes = dict.fromkeys([*run.batch_sizes, *run.deployed_sizes])
                self._float64(run, {size: batch_at(s, case, size) for size in sizes})
            self._further_sizes(run)
            if case.training and s.backend is not None and "target_trajectory" in run.outputs:
                self._compiled_trajectories(run)
        run.seconds += time.perf_counter() - start

    def _further_sizes(self, run: CaseRun) -> None:
        """The reference at every further batch size the target ran at (the compiled graph's and the deployment
        forms' sizes), and in training both sides at the further sizes: the target's eager model is compared with
        the reference there too, not only with its own compiled form (a bug that shows only past some batch size)."""
        case, s = run.case, self.settings
        further = [*run.batch_sizes, *run.deployed_sizes] if not case.training else [
            *further_batch_sizes(case.batch.batch_size, s.extra_batch_sizes)]
        for size in dict.fromkeys(size for size in further if size != case.batch.batch_size):
            suffix, batch = batch_suffix(case, size), batch_at(s, case, size)
            if f"target{suffix}" not in run.outputs and not record_outputs(
                    run, f"target{suffix}", f"forward{suffix}", lambda b=batch: self.target.call(case, b)):
                return
            if not record_outputs(run, f"reference{suffix}", f"reference:forward{suffix}",
                               lambda b=batch: self.reference.call(case, b)):
                return

    def _explain(self, run: CaseRun, roles: tuple[str, ...]) -> None:
        for role in roles:
            side = self.reference if role == "reference" else self.target
            explained = guarded(run, f"explain:{role}", lambda x=side: x.explain(run.case))
            run.explain[role] = None if explained is FAILED else explained

    def _float64(self, run: CaseRun, batches: dict[int, dict[str, Any]]) -> None:
        """The exact answer at each batch size: full precision, no autocast, the float32 run's random draws. The
        target's own float64 run; if it cannot run in float64, the reference's (an exact reference for the target
        too once the two agree bitwise in float32, which the oracle checks before it uses it)."""
        case = run.case
        outputs = guarded(run, "compiled:target64", lambda: self.target.call64(case, batches))
        form = "target64"
        if outputs is FAILED:
            outputs = guarded(run, "compiled:reference64", lambda: self.reference.call64(case, batches))
            form = "reference64"
        if outputs is not FAILED:
            run.outputs.update({form + batch_suffix(case, size): out for size, out in outputs.items()})

    def run(self, case: Case) -> CaseRun:
        run = self.run_eager(case)
        self.run_compiled(run)
        return run

    # -- eager levels -------------------------------------------------------------------------------
    def _run_levels(self, run: CaseRun) -> None:
        case, reference, target = run.case, self.reference, self.target
        batch = batch_at(self.settings, case, case.batch.batch_size)
        run.features = {**case.features(), "padding": ACTION_IS_PAD in batch and bool(batch[ACTION_IS_PAD].any())}
        state = guarded(run, "reference:build", lambda: reference.build(case))
        if state is FAILED:
            # Nothing to load into the target; whether its own build raises alike tells "raised" from "raised-both".
            guarded(run, "build", lambda: target.build(case))
            return
        forward, loaded = self._both(lambda: reference.call(case, batch), lambda: target.load(case, state))
        record_outputs(run, "reference", "reference:forward", forward.get)
        layout = guarded(run, "build", loaded.get)
        if layout is FAILED:
            return
        if layout is not None:
            run.layouts["model"] = layout
            return
        # The target's instance first runs a batch of other values (the next seed), as a robot or training loop
        # calls a model again and again: outputs that depend on what ran before differ from the reference's.
        other = batch_at(self.settings, dataclasses.replace(case, batch=dataclasses.replace(
            case.batch, seed=case.batch.seed + 1)), case.batch.batch_size)
        guarded(run, "warm-up", lambda: target.call(case, other))
        for name in ("target", "target_repeat"):
            if not record_outputs(run, name, "forward" if name == "target" else name, lambda: target.call(case, batch)):
                break
        loads = self._policy_loads(run)
        if loads:
            outputs = self._both(lambda: reference.policy(case, rollout_only=self.rollout_only),
                                 lambda: target.policy(case, rollout_only=self.rollout_only))
            record_outputs(run, "reference_policy", "reference:policy", outputs[0].get)
            record_outputs(run, "target_policy", "policy", outputs[1].get)
        self._evidence(run, batch)
        if loads and case.training and self.settings.train_steps:
            self._trajectories(run)

    # -- training trajectories ----------------------------------------------------------------------------
    def _trajectories(self, run: CaseRun) -> None:
        """Both sides' policies trained over the settings' steps, each as its own training does
        (`act_equiv.run.training`); where they differ, the evidence (`_trajectory_evidence`)."""
        case = run.case
        outcomes = self._both(lambda: self.reference.trajectory(case), lambda: self.target.trajectory(case))
        for role, call, outcome in zip(("reference", "target"), ("reference:train", "train"), outcomes, strict=True):
            trained = guarded(run, call, outcome.get)
            if trained is not FAILED:
                run.outputs[f"{role}_trajectory"], run.trained[role] = trained
        if {"reference_trajectory", "target_trajectory"} <= run.outputs.keys() and not identical(
                run.outputs["reference_trajectory"], run.outputs["target_trajectory"]):
            self._trajectory_evidence(run, ("reference", "target"))

    def _trajectory_evidence(self, run: CaseRun, roles: tuple[str, ...]) -> None:
        """The sides' trajectories in float64 (the envelope rounding may grow within), and with dropout off (whether a
        difference needs dropout: with dropout replayed, it is not dropout's randomness either way)."""
        case, outputs = run.case, run.outputs
        sides = {"reference": self.reference, "target": self.target}
        wanted = [(role, "64", {"float64": "float32"}) for role in roles if f"{role}_trajectory64" not in outputs]
        if case.config.dropout:
            wanted += [(role, "_nodropout", {"dropout": False}) for role in roles
                       if f"{role}_trajectory_nodropout" not in outputs]
        for role, suffix, keywords in wanted:
            name = f"{role}_trajectory{suffix}"
            record_outputs(run, name, name, lambda side=sides[role], k=keywords: side.trajectory(case, **k)[0])

    def _compiled_trajectories(self, run: CaseRun) -> None:
        """On the first `trained_structures` structures of the run (and again on those), the target's policy trained
        with its model compiled and with the whole training step compiled; where one differs from the eager
        trajectory, both again in float64."""
        case = run.case
        structure = case.structure_key()
        if structure not in self._trained_structures and not self._claim_training():
            return
        self._trained_structures.add(structure)
        differing = []
        for trained in training.TRAINED[1:]:
            result = guarded(run, f"train:{trained}", lambda t=trained: self.target.trajectory(case, t),
                             forms.COMPILED)
            if result is not FAILED:
                run.outputs[f"{trained}_trajectory"], run.trained[trained] = result
                if not identical(run.outputs["target_trajectory"], result[0]):
                    differing.append(trained)
        if not differing:
            return
        # The evidence: eager in float64 with the float32 run's draws (the envelope), and eager and each differing
        # compiled trajectory in float64 drawing their own numbers (a compiled graph cannot replay float32 draws).
        wanted = [("target_trajectory64", "eager", "float32")] if "target_trajectory64" not in run.outputs else []
        wanted += [("target_trajectory64native", "eager", "native")]
        wanted += [(f"{trained}_trajectory64native", trained, "native") for trained in differing]
        for name, trained, draws in wanted:
            record_outputs(run, name, name, lambda t=trained, d=draws: self.target.trajectory(case, t, float64=d)[0])

    def _claim_training(self) -> bool:
        """A slot for one more structure trained compiled: within this runner's `trained_structures`, and where the
        run's processes share `trained_claims`, a slot no other process took (its file, created atomically)."""
        s = self.settings
        if len(self._trained_structures) >= s.trained_structures:
            return False
        if s.trained_claims is None:
            return True
        for slot in range(s.trained_structures):
            try:
                os.close(os.open(os.path.join(s.trained_claims, f"trained-{slot}"), os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                continue
            return True
        return False

    def _policy_loads(self, run: CaseRun) -> bool:
        """The checkpoint contract at the policy level: each side's policy, as its own constructor builds it, must
        hold the same keys and shapes (the reference's checkpoint then loads strictly into the target and the
        target's into the reference). A policy that wraps its model (torch.compile's `_orig_mod.`) fails it."""
        case = run.case
        states = self._both(lambda: self.reference.policy_state(case), lambda: self.target.policy_state(case))
        reference = guarded(run, "reference:policy", states[0].get)
        target = guarded(run, "policy", states[1].get)
        if reference is FAILED or target is FAILED:
            return False
        layout = state_layout(reference, target)
        if layout is None:
            layout = guarded(run, "policy", lambda: self._checkpoints(case))
            if layout is FAILED:
                return False
        if layout is not None:
            run.layouts["policy"] = layout
        return layout is None

    def _checkpoints(self, case: Case) -> dict[str, list[str]] | None:
        """Where both sides' policies have a checkpoint format of their own (LeRobot's `save_pretrained`), each
        side's checkpoint must load strictly into the other's policy and give back its weights bit for bit; checked
        once per structure. A refusal, as the layout it is."""
        key = case.structure_key()
        if key in self._checkpointed:
            return self._checkpointed[key]
        layout = None
        reference, target = self.reference, self.target
        if all(outcome.get() for outcome in self._both(lambda: reference.saves_checkpoints(case),
                                                        lambda: target.saves_checkpoints(case))):
            with (tempfile.TemporaryDirectory(prefix="act-equiv-checkpoint-") as by_reference,
                  tempfile.TemporaryDirectory(prefix="act-equiv-checkpoint-") as by_target):
                for outcome in self._both(lambda: reference.save_checkpoint(case, by_reference),
                                          lambda: target.save_checkpoint(case, by_target)):
                    outcome.get()
                into_reference, into_target = self._both(lambda: reference.load_checkpoint(case, by_target),
                                                         lambda: target.load_checkpoint(case, by_reference))
                refusals = (("reference", "target", into_target.get()), ("target", "reference", into_reference.get()))
            for source, destination, refused in refusals:
                if refused is not None:
                    layout = {"missing": [], "unexpected": [], "shapes": [], "checkpoint": [
                        f"the {source}'s save_pretrained checkpoint does not load into the {destination}'s policy: "
                        f"{refused}"]}
                    break
        self._checkpointed[key] = layout  # only once the round trip finished: one that raised is tried again
        return layout

    def _evidence(self, run: CaseRun, batch: dict[str, Any]) -> None:
        """Where a pair is not bitwise equal, both sides again in float64: whether they then agree to float64
        rounding is what tells a rounding-only change from a divergence (the oracle decides)."""
        case, outputs, size = run.case, run.outputs, run.case.batch.batch_size
        if {"reference", "target"} <= outputs.keys() and not identical(outputs["reference"], outputs["target"]):
            outcomes = self._both(lambda: self.reference.call64(case, {size: batch}),
                                  lambda: self.target.call64(case, {size: batch}))
            for role, outcome in zip(("reference", "target"), outcomes, strict=True):
                computed = guarded(run, f"{role}64", outcome.get)
                if computed is not FAILED:
                    outputs[f"{role}64"] = computed[size]
            # Whether a first call computes the reference's outputs: then the difference is the instance's history.
            record_outputs(run, "target_fresh", "fresh", lambda: self.target.fresh(case, batch))
        if {"reference_policy", "target_policy"} <= outputs.keys() and not identical(outputs["reference_policy"],
                                                                                      outputs["target_policy"]):
            outcomes = self._both(lambda: self.reference.policy(case, float64=True, rollout_only=self.rollout_only),
                                  lambda: self.target.policy(case, float64=True, rollout_only=self.rollout_only))
            for role, outcome in zip(("reference", "target"), outcomes, strict=True):
                record_outputs(run, f"{role}_policy64", f"{role}_policy64", outcome.get)

    def _both(self, reference: Callable[[], Any], target: Callable[[], Any]) -> list[Outcome]:
        """A call of each side, at once where a side runs in a worker (`act_equiv.run.concurrent`)."""
        return at_once([(reference, self.reference.in_worker), (target, self.target.in_worker)])

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
        if not same_bits(value, other):
            return False
    return True
