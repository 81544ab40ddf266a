"""A side: one ACT implementation of a comparison, built for a case and run in it. `Side` is what the runner
calls; `InProcessSide` runs it in this process, `act_equiv.run.worker.WorkerSide` in another.

The runner compares two sides, the reference and the target. A side builds its model for a case (the reference with
the case's seeded weights, the target by loading the reference's state_dict `strict=True`), then runs it
- at the model level: the inner model's forward plus act_equiv's loss (`Probe`), with every gradient in training;
- at the policy level: the implementation's own policy (LeRobot's `ACTPolicy` for LeRobot, act_equiv's for its own
  models): its loss in training and in eval with actions, `predict_action_chunk`, and `select_action` over a short
  rollout that refills the action queue (or feeds the temporal ensembler);
each in the run's dtype, or in float64 for the evidence that tells rounding from divergence.
`act_equiv.run.worker` runs `InProcessSide` in another process behind the same methods.
"""

from __future__ import annotations

import copy
import importlib.util
import platform
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from act_equiv import forms
from act_equiv.case import Case, make_batch
from act_equiv.config import OBS_IMAGES, ACTConfig
from act_equiv.errors import PolicyApiMissingError
from act_equiv.models import build
from act_equiv.run import numerics, training
from act_equiv.run.form_runner import FormRunner
from act_equiv.run.inputs import batch_at, cast_batch, check_unchanged, copy_batch
from act_equiv.run.probe import Probe
from act_equiv.run.records import FormsRecord, Outputs
from act_equiv.settings import Settings
from act_equiv.targets.target import Target

POLICY_API = ("forward", "predict_action_chunk", "select_action", "reset")
"""The policy methods the policy level calls (LeRobot's `ACTPolicy` API)."""
CHECKPOINT_FILE = "model.safetensors"
"""The weights file of a LeRobot policy checkpoint (`save_pretrained`)."""

__all__ = ["CHECKPOINT_FILE", "POLICY_API", "InProcessSide", "Probe", "Side", "policy_batch", "refill",
           "rollout_steps", "shapes", "split_policy", "state_layout"]


class Side(Protocol):
    """What the runner calls on a side, wherever it runs: `build` (the reference) or `load` (the target) a case's
    model first, then the calls; each returns named outputs (`act_equiv.run.records.Outputs`) or raises, and an
    error raised in a worker arrives as a `RemoteError` carrying its kind."""

    in_worker: bool
    settings: Settings

    @property
    def spec(self) -> str: ...
    @property
    def policy_name(self) -> str: ...
    def environment(self) -> dict[str, Any]: ...
    def missing_forms(self) -> dict[str, str]: ...
    def unsupported(self, config: ACTConfig) -> str | None: ...
    def build(self, case: Case) -> dict[str, torch.Tensor]: ...
    def load(self, case: Case, state: dict[str, torch.Tensor]) -> dict[str, list[str]] | None: ...
    def saves_checkpoints(self, case: Case) -> bool: ...
    def save_checkpoint(self, case: Case, directory: str) -> None: ...
    def load_checkpoint(self, case: Case, directory: str) -> str | None: ...
    def policy_state(self, case: Case) -> dict[str, list[int]]: ...
    def forms(self, case: Case) -> FormsRecord: ...
    def explain(self, case: Case) -> dict[str, Any] | None: ...
    def call(self, case: Case, batch: dict[str, Any]) -> Outputs: ...
    def fresh(self, case: Case, batch: dict[str, Any]) -> Outputs: ...
    def call64(self, case: Case, batches: dict[int, dict[str, Any]]) -> dict[int, Outputs]: ...
    def policy(self, case: Case, float64: bool = False, rollout_only: bool = False) -> Outputs: ...
    def trajectory(self, case: Case, trained: training.Trained = "eager", float64: training.Draws | None = None,
                   dropout: bool = True) -> tuple[Outputs, dict[str, Any]]: ...
    def close(self) -> None: ...


class InProcessSide:
    """An ACT implementation (a `Target`) in this process (a `Side`). `build` or `load` first, then the calls."""

    in_worker = False
    """Whether the side computes in another process (`act_equiv.run.worker`)."""

    def __init__(self, target: Target, settings: Settings) -> None:
        self.target = target
        self.settings = settings
        self.model: nn.Module | None = None
        self._forms = FormRunner()
        self._own_policy: str | None = None
        """The class of the policy the target's factory returns, where it returns a policy (a fork's own)."""
        self._policy: tuple[str, nn.Module, nn.Module] | None = None
        """(structure, model, policy): the policy built around the current model, shared by the case's policy-level
        calls (a LeRobot policy costs tens of milliseconds to construct, and a case asks for it up to five times)."""

    @property
    def spec(self) -> str:
        return self.target.name

    @property
    def policy_name(self) -> str:
        """The policy-level form, by its qualified name (act_equiv's `ACTPolicy`, LeRobot's through its adapter, or
        the policy a target's factory returns, once it made one)."""
        if self._own_policy is not None:
            return self._own_policy
        factory = getattr(self.target.policy, "func", self.target.policy)
        return f"{factory.__module__}.{factory.__qualname__}"

    def environment(self) -> dict[str, Any]:
        """Where this side runs, as a report states it."""
        return {"spec": self.spec, "process": "in-process", "python": platform.python_version(),
                "torch": str(torch.__version__), "policy": self.policy_name, **self.target.describe()}

    def missing_forms(self) -> dict[str, str]:
        """The forms of the settings that cannot run in this interpreter, each with what it needs
        (`act_equiv.forms.missing`)."""
        return {name: reason for name in self.settings.forms if (reason := forms.missing(name)) is not None}

    def unsupported(self, config: ACTConfig) -> str | None:
        return self.target.unsupported(config)

    def build(self, case: Case) -> dict[str, torch.Tensor]:
        """The reference: the model with the case's seeded weights; returns its state_dict for the target."""
        self._made(case, build(case.config, case.weight_seed, self.target.factory, case.weight_scale))
        return self.model.state_dict()

    def load(self, case: Case, state: dict[str, torch.Tensor]) -> dict[str, list[str]] | None:
        """The target: built, then the reference weights loaded `strict=True`. A different key set is returned as
        the layout change it is (missing/unexpected keys) and nothing is loaded."""
        self._made(case, self.target.factory(case.config))
        layout = state_layout(shapes(state), shapes(self.model.state_dict()))
        if layout is None:
            self.model.load_state_dict(state, strict=True)
        return layout

    def _made(self, case: Case, made: nn.Module) -> None:
        """Take what the factory made: a model, or a policy around one (`split_policy`), which then is this side's
        policy level instead of `Target.policy`'s."""
        s = self.settings
        model, policy = split_policy(made.to(s.device, numerics.DTYPES[s.dtype]))
        self.model = model
        if policy is not None:
            self._own_policy = f"{type(policy).__module__}.{type(policy).__qualname__}"
            self._policy = (case.structure_key(), model, policy)

    def saves_checkpoints(self, case: Case) -> bool:
        """Whether this side's policy has a checkpoint format of its own (LeRobot's `save_pretrained`, safetensors)."""
        return (importlib.util.find_spec("safetensors") is not None
                and hasattr(self.current_policy(case), "save_pretrained"))

    def save_checkpoint(self, case: Case, directory: str) -> None:
        """The policy's checkpoint as its own `save_pretrained` writes it (config.json, model.safetensors)."""
        self.current_policy(case).save_pretrained(directory)

    def load_checkpoint(self, case: Case, directory: str) -> str | None:
        """Load the `model.safetensors` of `directory` strictly into this side's policy, as LeRobot's
        `from_pretrained` does (`safetensors.torch.load_model`); what refused it, or None. The weights must come back
        bit for bit."""
        from safetensors.torch import load_model

        policy = self.current_policy(case)
        self._policy = None  # zeroed below: shared again only once the checkpoint gave every weight back
        expected = {key: value.clone() for key, value in policy.state_dict().items()}
        for value in policy.state_dict().values():
            if value.is_floating_point():
                value.zero_()  # so that only the checkpoint can bring the weights back
        try:
            load_model(policy, str(Path(directory) / CHECKPOINT_FILE), strict=True)
        except Exception as error:
            return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"
        changed = [key for key, value in policy.state_dict().items() if not torch.equal(value, expected[key])]
        if changed:
            return f"the weights loaded differ from the saved ones: {changed[:5]}"
        self._policy = (case.structure_key(), self.model, policy)
        return None

    def policy_state(self, case: Case) -> dict[str, list[int]]:
        """The keys and shapes of this side's policy as its own constructor builds it around the model: what a
        checkpoint of it holds."""
        return shapes(self.current_policy(case).state_dict())

    def current_policy(self, case: Case) -> nn.Module:
        """The side's own policy around the current model, built once per model (`make_policy`)."""
        key = case.structure_key()
        if self._policy is None or self._policy[0] != key or self._policy[1] is not self.model:
            self._policy = (key, self.model, self.target.make_policy(case.config, self.model))
        return self._policy[2]

    def batch(self, case: Case, size: int) -> dict[str, Any]:
        """The case's batch at `size`, in the run's device and dtype (the same tensors in every process)."""
        return batch_at(self.settings, case, size)

    def forms(self, case: Case) -> FormsRecord:
        """The loaded model's forms the settings ask for (`act_equiv.run.form_runner`), run here."""
        return self._forms.run(self, case)

    def explain(self, case: Case) -> dict[str, Any] | None:
        """Graphs and graph breaks of the built or loaded model, eager, as `torch._dynamo.explain` counts them."""
        return self._forms.explain(self, case)

    def call(self, case: Case, batch: dict[str, Any]) -> Outputs:
        """The model level in the case's mode, in the run's dtype and autocast."""
        return self.invoke(case, Probe(case.config, self.model), self.model, batch)

    def fresh(self, case: Case, batch: dict[str, Any]) -> Outputs:
        """The model level on a new instance holding the current weights: what the target computes on a first call,
        whatever its instance ran before."""
        s = self.settings
        model, _ = split_policy(self.target.factory(case.config).to(s.device, numerics.DTYPES[s.dtype]))
        model.load_state_dict(self.model.state_dict(), strict=True)
        return self.invoke(case, Probe(case.config, model), model, batch)

    def call64(self, case: Case, batches: dict[int, dict[str, Any]]) -> dict[int, Outputs]:
        """The model level on one float64 copy, at each batch size: the exact answer (no autocast, and the run's
        float32 random draws, so it is the same computation)."""
        model64 = copy.deepcopy(self.model).to(torch.float64)
        probe = Probe(case.config, model64)
        with self._sampling():
            return {size: self.invoke(case, probe, model64, cast_batch(batch, torch.float64), autocast=False)
                    for size, batch in batches.items()}

    def policy(self, case: Case, float64: bool = False, rollout_only: bool = False) -> Outputs:
        """The policy level: the implementation's own policy around the loaded model (see the module docstring).
        `rollout_only` where both sides use act_equiv's `ACTPolicy`: its loss and action chunk are exactly the model
        level's calls, so only the rollout is new (and a training case has nothing more to compare)."""
        s = self.settings
        if rollout_only and case.training:
            return {}
        dtype = torch.float64 if float64 else numerics.DTYPES[s.dtype]
        policy = self.current_policy(case)
        if float64:  # a copy: the target's own policy copied whole, else `Target.policy` around a copied model
            policy = (copy.deepcopy(policy).to(torch.float64) if self._own_policy is not None
                      else self.target.make_policy(case.config, copy.deepcopy(self.model).to(torch.float64)))
        missing = [name for name in POLICY_API if not callable(getattr(policy, name, None))]
        if missing:
            raise PolicyApiMissingError(f"{type(policy).__qualname__} has no {', '.join(missing)}: the policy level "
                                        f"calls {', '.join(POLICY_API)}")
        pristine = policy_batch(case.config, make_batch(case.config, case.batch, s.device, dtype))

        def call(method: Callable[[dict[str, Any]], Any], observation: dict[str, Any],
                 given: dict[str, Any] | None = None) -> Any:
            given = copy_batch(observation) if given is None else given
            result = method(given)
            check_unchanged(observation, given, f"the policy's {method.__name__}")
            return result

        outputs: Outputs = {}
        with self._sampling() if float64 else nullcontext(), numerics.autocast(s.device, None if float64
                                                                                  else s.autocast):
            policy.train(case.training)
            if case.batch.actions and not rollout_only:
                torch.manual_seed(case.weight_seed + 1)
                with torch.set_grad_enabled(case.training):
                    loss, terms = call(policy.forward, pristine)
                outputs["policy/loss"] = loss.detach()
                outputs.update({f"policy/{name}": torch.as_tensor(value).detach() for name, value in terms.items()})
            if not case.training:
                torch.manual_seed(case.weight_seed + 1)
                if not rollout_only:
                    outputs["policy/chunk"] = call(policy.predict_action_chunk, pristine)
                policy.reset()
                actions, buffers = [], None
                for observation in map(lambda step: policy_batch(case.config, step),
                                       rollout_steps(case, s.device, dtype)):
                    buffers = refill(buffers, observation)
                    actions.append(call(policy.select_action, observation, buffers))
                outputs["policy/rollout"] = torch.stack(actions)
        return outputs

    def trajectory(self, case: Case, trained: training.Trained = "eager", float64: training.Draws | None = None,
                   dropout: bool = True) -> tuple[Outputs, dict[str, Any]]:
        """The side's own policy trained over the settings' `train_steps` (`act_equiv.run.training`): eager,
        compiled or the whole step compiled; in float64 (the evidence) or with dropout off. (outputs, how it
        trained)."""
        steps = [policy_batch(case.config, batch)
                 for batch in training.batches(case, self.settings, self.settings.train_steps)]
        observation = policy_batch(case.config, self.batch(case, case.batch.batch_size))
        try:
            return training.train(self.current_policy(case), case.config, case, self.settings, steps, observation,
                                  trained, float64, dropout)
        finally:
            if trained != "eager":
                self._forms.forget_graphs()  # training reset dynamo: the compiled form compiles afresh

    def _sampling(self) -> Any:
        return numerics.float32_sampling() if self.settings.dtype != "float64" else nullcontext()

    def close(self) -> None:
        """Nothing to release in this process (a worker side ends its process)."""

    def invoke(self, case: Case, fn: Callable[[dict[str, Any]], Outputs], model: nn.Module,
               batch: dict[str, Any], autocast: bool = True) -> Outputs:
        """Call `fn` (the model's `Probe`, or a compiled form of it): seed, run in the case's mode (eval under
        no_grad, as inference runs) and the settings' autocast, collect grads in training (backward outside
        autocast, as torch.amp recommends)."""
        s = self.settings
        model.to(s.device).train(case.training)
        for p in model.parameters():
            p.grad = None
        torch.manual_seed(case.weight_seed + 1)
        given = copy_batch(batch)
        with torch.set_grad_enabled(case.training):
            with numerics.autocast(s.device, s.autocast if autocast else None):
                outputs = dict(fn(given))
            check_unchanged(batch, given, "the forward")
            if case.training:
                outputs["loss"].backward()
                outputs.update({f"grad/{n}": p.grad for n, p in model.named_parameters() if p.requires_grad})
        return {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in outputs.items()}


def rollout_steps(case: Case, device: str, dtype: torch.dtype) -> Iterator[dict[str, Any]]:
    """The observations of a policy-level rollout: `n_action_steps + 1` steps, each a fresh observation without
    actions, so the queue empties and refills once (the ensembler folds every step into the previous chunks). Made
    one at a time: a robot loop frees each observation before the next, so memory (and a tensor's address) is
    re-used (`refill`)."""
    spec = case.batch
    for step in range(case.config.n_action_steps + 1):
        yield make_batch(case.config, type(spec)(spec.batch_size, spec.seed + 1 + step, spec.scale, "none", False),
                         device, dtype)


def policy_batch(config: ACTConfig, batch: dict[str, Any]) -> dict[str, Any]:
    """A model batch as a policy reads it: each camera also under its own feature key (LeRobot's policy gathers
    `observation.images` from those keys itself)."""
    cameras = dict(zip(config.image_features, batch.get(OBS_IMAGES, []), strict=False))
    return {**batch, **cameras}


def state_layout(reference: dict[str, list[int]], target: dict[str, list[int]]) -> dict[str, list[str]] | None:
    """How two checkpoints' layouts (key -> shape) differ, or None where each loads strictly into the other."""
    shapes = sorted(key for key in reference.keys() & target.keys() if list(reference[key]) != list(target[key]))
    if reference.keys() == target.keys() and not shapes:
        return None
    return {"missing": sorted(reference.keys() - target.keys()), "unexpected": sorted(target.keys() - reference.keys()),
            "shapes": [f"{key}: {list(reference[key])} -> {list(target[key])}" for key in shapes]}


def shapes(state: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    """A state_dict's layout: key -> shape."""
    return {key: list(value.shape) for key, value in state.items()}


def refill(buffers: dict[str, Any] | None, batch: dict[str, Any]) -> dict[str, Any]:
    """A robot loop's input buffers holding `batch`'s values: a copy at the first step, then the same tensors
    written in place at every step, as a robot loop re-uses its buffers. A policy that caches anything by a
    tensor's identity or address (`data_ptr`) then sees new values where it expects its cached ones."""
    if buffers is None:
        return copy_batch(batch)
    for key, value in batch.items():
        olds, news = (buffers[key], value) if isinstance(value, list) else ([buffers[key]], [value])
        for buffer, new in zip(olds, news, strict=True):
            if isinstance(new, torch.Tensor):
                buffer.copy_(new)
    return buffers


def split_policy(made: nn.Module) -> tuple[nn.Module, nn.Module | None]:
    """(the inner model, the policy) of what a target's factory made: a policy, as LeRobot's `ACTPolicy` is (a
    `select_action` and the model as its `model` attribute), or the model alone (no policy)."""
    model = getattr(made, "model", None)
    if callable(getattr(made, "select_action", None)) and isinstance(model, nn.Module):
        return model, made
    return made, None
