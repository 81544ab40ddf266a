"""The settings of a run, validated once: every setting's allowed values and its check live in this file.

`Settings` is frozen and checks itself when it is built: one check per setting (`_VALIDATORS`, as Hypothesis's
`settings` validates each of its own), then the rules between settings. The command line (`act_equiv.cli.options`,
which takes its choices from the value lists here), the pytest plugin, `act_equiv.gate.Gate` and the bench build one;
the sides, the runner and the oracle read it, and a worker rebuilds it from its fields. A bad value is a `UsageError`
naming the setting and its allowed values. What this interpreter can do (a CUDA device, an autocast dtype, a form's
packages) is asked before the sides open (`act_equiv.gate.check_supported`) or by the side itself, not here: this
module imports no torch, since the option table reads it in every pytest session.

`Search` is how a check searches (profile, examples, time and shrink budgets, seed: `act-equiv check`, and `mutants`
per mutant) and `Bench` the bench's own counts; each is validated the same way, once, when it is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from act_equiv import forms as form_table
from act_equiv.errors import UsageError

__all__ = ["AUTOCAST", "BACKENDS", "DEVICES", "DTYPES", "MODES", "ONNX_EXPORTERS", "SHRINK_BUDGET", "WORKER_STARTUP",
           "WORKER_TIMEOUT", "Bench", "Search", "Settings"]

DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")
"""Model and input dtypes (`act_equiv.run.numerics.DTYPES` gives torch's)."""
BACKENDS = ("inductor", "aot_eager", "eager")
"""torch.compile backends of the compiled form."""
MODES = ("default", "reduce-overhead", "max-autotune")
"""torch.compile modes (inductor only)."""
AUTOCAST = ("bfloat16", "float16")
"""torch.autocast dtypes (`act_equiv.run.numerics.AUTOCAST_DTYPES` gives torch's)."""
ONNX_EXPORTERS = ("dynamo", "torchscript")
"""The onnx form's exporters: torch.onnx.export with dynamo=True, or the TorchScript exporter."""
WORKER_TIMEOUT = 300.0
"""Seconds a side in a worker may take for one request (a build or one case's forms) before it counts as hung."""
WORKER_STARTUP = 300.0
"""Seconds a worker may take to start and open its side (its interpreter, torch, the side's own imports: LeRobot's
take seconds), or `worker_timeout` where that is longer: a request limit shorter than a start-up is no reason to give
up on the worker."""
SHRINK_BUDGET = 60.0
"""Seconds a found failure may spend shrinking before the smallest case so far is reported."""


@dataclass(frozen=True)
class Settings:
    """What is compared, where, and how its forms run. `reference`/`target` are specs (`act_equiv.targets.resolve`,
    or `lerobot@REV` of the repository `lerobot_repo`); `*_python` runs that side on another interpreter."""

    target: str = "concat"
    reference: str = "legacy"
    reference_python: str | None = None
    target_python: str | None = None
    lerobot_repo: str | None = None
    worker_timeout: float = WORKER_TIMEOUT
    device: str = "cpu"
    dtype: str = "float32"
    backend: str | None = "aot_eager"
    """The compiled form's backend; None (or no "compiled" in `forms`) runs no compiled form."""
    mode: str | None = None
    dynamic: bool | None = None
    autocast: str | None = None
    """"bfloat16" / "float16": every form but the float64 reference runs under `torch.autocast` (float32 weights)."""
    forms: tuple[str, ...] = (form_table.COMPILED,)
    """The target's forms beside its eager one (`act_equiv.forms.FORMS`); a comma-separated string is accepted and
    read as names. Holds "compiled" exactly when a compiled form runs (with `backend`)."""
    onnx_exporter: str = "dynamo"
    train_steps: int | None = None
    """Optimizer steps of a training case's trajectory (`act_equiv.run.training`); 0 trains none; None: the loaded
    Hypothesis profile's (`act_equiv.profiles.train_steps`), read when the settings are built."""
    trained_structures: int = 1
    """Structures per run whose training trajectory is compiled too, each of their cases then trained compiled: a
    compiled trajectory compiles the forward, backward and (whole step) the optimizer over every parameter, and
    again in float64 where it is not bitwise (about 40 s a structure with aot_eager, minutes with inductor, on 2 CPU
    cores)."""
    trained_claims: str | None = None
    """A directory the processes of one run share (pytest-xdist's workers, `act_equiv.plugin`): each structure
    trained compiled takes one of the `trained_structures` slots there, so that the count holds per run, not per
    process."""
    baseline: str | None = None
    """A known-findings file (`act_equiv.baseline`): the failures it lists are known, not failures."""
    strict: bool = False
    """Fail the warning classes (rounding, raised-both, a stale baseline entry) too."""
    record_findings: bool = False
    """Accept every failure (as known), so that a run goes on and its findings can be written as a baseline."""
    explain: bool = True
    """Trace the eager sides with `torch._dynamo.explain` (once per structure and mode, in the compiled stage: a
    trace costs seconds): both sides where no compiled form runs, and the target where its compiled form hit a graph
    break (fullgraph stops at the first; the trace lists every one)."""
    extra_batch_sizes: int = 2
    """Compiled calls at this many further batch sizes (eval only), each compared with the eager target at that
    size: a graph that is wrong only once the batch dimension is symbolic shows there; recompiles are counted."""
    reference64: bool = False
    """Run a float64 reference beside the compiled form: the gate sets it when a tolerance of these settings may fall
    back to the fp64-referenced check."""

    def __post_init__(self) -> None:
        _validate(self, _VALIDATORS)
        _validate_together(self)

    @property
    def deployed_forms(self) -> tuple[str, ...]:
        """The deployment forms (exported, onnx, aoti) asked for."""
        return tuple(form for form in self.forms if form_table.FORMS[form].deployment)

    def label(self) -> str:
        """How the forms ran, in a few words ("cpu float32+bfloat16 autocast, inductor"): reports group by it."""
        precision = self.dtype + (f"+{self.autocast} autocast" if self.autocast else "")
        compiled = self.backend if self.mode is None else f"{self.backend} {self.mode}"
        deployed = [f"onnx {self.onnx_exporter}" if form == "onnx" else form for form in self.deployed_forms]
        return f"{self.device} {precision}, {compiled or 'not compiled'}" + "".join(f", {form}" for form in deployed)

    def stated(self) -> dict[str, Any]:
        """The settings a report states, by the names their options have (`act_equiv.cli.options.GATE`), `device`
        aside (a report names the device itself)."""
        stated = {name: getattr(self, name) for name in _VALIDATORS if name not in _UNSTATED}
        return {**stated, "forms": ",".join(self.forms)}

    def replace(self, **changes: Any) -> Settings:
        """These settings with `changes`, validated again."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Search:
    """How a check searches (`act_equiv.stages.check`). Built with None where a caller left a setting out: `profile`
    becomes the default profile (`act_equiv.profiles.default_profile`), `max_examples` that profile's count."""

    profile: str | None = None
    """A Hypothesis profile of `act_equiv.profiles.PROFILES`."""
    max_examples: int | None = None
    """Compared cases of the compiled search; the eager sweep draws a multiple (`act_equiv.stages`)."""
    time_budget: float | None = None
    """Seconds after which the random stages stop drawing (the covering array always runs whole); None: no limit."""
    seed: int | None = None
    """Hypothesis's seed (reproducible draws); None: the profile's (derandomized under ci)."""
    shrink_budget: float = SHRINK_BUDGET
    """Seconds a failure may spend shrinking; 0 reports the first failing case as found."""

    def __post_init__(self) -> None:
        _validate(self, _SEARCH_VALIDATORS)
        if self.max_examples is None:
            from act_equiv import profiles

            object.__setattr__(self, "max_examples", profiles.PROFILES[self.profile]["max_examples"])


@dataclass(frozen=True)
class Bench:
    """The bench's own settings (`act-equiv bench`) beside the gate's: its counts, and whether it times training
    steps, which only forms that run in training can take."""

    batch_size: int = 8
    num_runs: int = 20
    """Timed calls per form."""
    warmup: int = 3
    """Untimed calls per form (the first one compiles)."""
    training: bool = False
    forms: tuple[str, ...] = ()
    """The gate settings' forms (`Settings.forms`)."""

    def __post_init__(self) -> None:
        _validate(self, _BENCH_VALIDATORS)
        inference = [form for form in self.forms if not form_table.FORMS[form].runs_in(True)]
        if self.training and inference:
            raise UsageError(f"forms={','.join(inference)!r} time inference only, not training steps: give them "
                             "without training", "forms")


def _validate(settings: Any, validators: dict[str, Callable[[str, Any], Any]]) -> None:
    """Each setting through its check, in order; a check may return the value as the settings keep it."""
    for name, validate in validators.items():
        value = validate(name, getattr(settings, name))
        if value is not getattr(settings, name):
            object.__setattr__(settings, name, value)


def _one_of(allowed: tuple[str, ...], optional: bool = False) -> Callable[[str, Any], Any]:
    def validate(name: str, value: Any) -> Any:
        if (value is None and optional) or value in allowed:
            return value
        raise UsageError(f"{name}={value!r} is invalid: one of {list(allowed)}" + (" or none" if optional else ""),
                         name)

    return validate


def _spec(name: str, value: Any) -> Any:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{name}={value!r} is invalid: a target spec (MODULE:ATTR, a built-in name, lerobot@REV)",
                         name)
    return value


def _path(name: str, value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{name}={value!r} is invalid: a path, or none", name)
    return value


def _flag(name: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise UsageError(f"{name}={value!r} is invalid: True or False", name)
    return value


def _at_least(minimum: int) -> Callable[[str, Any], Any]:
    def validate(name: str, value: Any) -> Any:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise UsageError(f"{name}={value!r} is invalid: an int >= {minimum}", name)
        return value

    return validate


def _integer(name: str, value: Any) -> Any:
    if not isinstance(value, int) or isinstance(value, bool):
        raise UsageError(f"{name}={value!r} is invalid: an int", name)
    return value


def _seconds(zero: bool = False) -> Callable[[str, Any], Any]:
    """Seconds > 0, or >= 0 where `zero` means none (no shrinking)."""
    def validate(name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0 if zero else value > 0):
            raise UsageError(f"{name}={value!r} is invalid: " + ("seconds >= 0 (0: none)" if zero else "seconds > 0"),
                             name)
        return float(value)

    return validate


def _optional(validate: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda name, value: None if value is None else validate(name, value)


def _dynamic(name: str, value: Any) -> Any:
    if value is not None and not isinstance(value, bool):
        raise UsageError(f"{name}={value!r} is invalid: True, False or None (dynamo decides)", name)
    return value


def _forms(name: str, value: Any) -> tuple[str, ...]:
    """Names, from a comma-separated string or a sequence, duplicates dropped; none: the eager forms only."""
    names = tuple(part.strip() for part in value.split(",")) if isinstance(value, str) else tuple(value)
    names = tuple(dict.fromkeys(part for part in names if part))
    if any(part not in form_table.FORMS for part in names):
        raise UsageError(f"{name}={','.join(map(str, names))!r} is invalid: a comma-separated list of "
                         f"{list(form_table.FORMS)}", name)
    return names


def _train_steps(name: str, value: Any) -> Any:
    if value is None:
        from act_equiv import profiles

        return profiles.train_steps()
    return _at_least(0)(name, value)


def _profile(name: str, value: Any) -> str:
    from act_equiv import profiles

    if value is None:
        return profiles.default_profile()
    if value not in profiles.PROFILES:
        raise UsageError(f"{name}={value!r} is invalid: one of {sorted(profiles.PROFILES)}", name)
    return value


_VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    "target": _spec, "reference": _spec, "reference_python": _path, "target_python": _path, "lerobot_repo": _path,
    "worker_timeout": _seconds(), "device": _one_of(DEVICES), "dtype": _one_of(DTYPES),
    "backend": _one_of(BACKENDS, optional=True), "mode": _one_of(MODES, optional=True), "dynamic": _dynamic,
    "autocast": _one_of(AUTOCAST, optional=True), "forms": _forms, "onnx_exporter": _one_of(ONNX_EXPORTERS),
    "train_steps": _train_steps, "trained_structures": _at_least(0), "trained_claims": _path, "baseline": _path,
    "strict": _flag, "record_findings": _flag, "explain": _flag, "extra_batch_sizes": _at_least(0),
    "reference64": _flag,
}
"""One check per setting, in field order; each returns the value as the settings keep it."""
_SEARCH_VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    "profile": _profile, "max_examples": _optional(_at_least(1)), "time_budget": _optional(_seconds()),
    "seed": _optional(_integer), "shrink_budget": _seconds(zero=True),
}
_BENCH_VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    "batch_size": _at_least(1), "num_runs": _at_least(1), "warmup": _at_least(1), "training": _flag, "forms": _forms,
}
_UNSTATED = ("device", "trained_claims", "record_findings", "explain", "extra_batch_sizes", "reference64")
"""Settings that are no option (how a caller runs the gate) or that a report states otherwise."""


def _validate_together(s: Settings) -> None:
    """The rules between settings; a compiled form runs exactly when "compiled" is in `forms` with a backend."""
    if s.record_findings and s.baseline is not None:
        raise UsageError(f"baseline={s.baseline!r} is invalid with record_findings=True (act-equiv check "
                         "--update-baseline): a run that accepts every finding writes a baseline, it reads none",
                         "baseline")
    if s.mode is not None and s.backend != "inductor":
        raise UsageError(f"mode={s.mode!r} needs backend='inductor' (got {s.backend!r})", "mode", "backend")
    if s.autocast is not None and s.dtype != "float32":
        raise UsageError(f"autocast={s.autocast!r} needs dtype='float32' (got {s.dtype!r}): autocast lowers float32 "
                         "ops only", "autocast", "dtype")
    no_autocast = [form for form in s.forms if not form_table.FORMS[form].autocast]
    if no_autocast and s.autocast is not None:
        raise UsageError(f"forms={','.join(no_autocast)!r} run without autocast (got autocast={s.autocast!r}): "
                         "deployment exports are float32", "forms", "autocast")
    for form in s.forms:
        if s.dtype not in form_table.FORMS[form].dtypes:
            raise UsageError(f"forms={form!r} runs {' or '.join(form_table.FORMS[form].dtypes)} only (got "
                             f"dtype={s.dtype!r})", "forms", "dtype")
    if form_table.COMPILED not in s.forms or s.backend is None:
        object.__setattr__(s, "forms", tuple(form for form in s.forms if form != form_table.COMPILED))
        object.__setattr__(s, "backend", None)
        object.__setattr__(s, "mode", None)
