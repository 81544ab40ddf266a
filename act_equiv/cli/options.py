"""The options, as data: one table for `act-equiv check`, `bench`, `mutants` and the pytest plugin's `--act-*`.

Each entry is written once (name, default, choices, help) and added to an argparse parser as `--name` or to the
plugin's pytest option group as `--act-name`; the allowed values and their validation are `act_equiv.settings`'.
`gate_keywords` is the one mapping from parsed values to `act_equiv.settings.Settings` keywords (and `option_values`
the way back, for `replay`), `search_keywords` the one to `act_equiv.settings.Search`'s. The plugin reads this
module in every pytest session, so it imports nothing heavy: no torch, no Hypothesis, of the package only `forms`
and `settings`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from act_equiv.forms import DEPLOYED
from act_equiv.settings import AUTOCAST, BACKENDS, DEVICES, DTYPES, MODES, ONNX_EXPORTERS, SHRINK_BUDGET, WORKER_TIMEOUT

__all__ = ["GATE", "OPTIONS", "REPORT_DIR", "SEARCH", "SIDES", "Option", "add_arguments", "add_to_group",
           "gate_keywords", "option_values", "search_keywords", "select"]


@dataclass(frozen=True)
class Option:
    """One setting: `--name` on the command line, `--act-name` in pytest, `name` in a report's environment."""

    name: str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    type: Callable[[str], Any] = str
    gate_values: Mapping[str, Any] = field(default_factory=dict)
    """Option value -> `Settings` value, where they differ (`--backend none` -> `backend=None`)."""
    unset: str = ""
    """What a `None` default means, for the help text."""
    flag_only: bool = False
    """A switch (`--strict`): present means True."""

    def flag(self, prefix: str) -> str:
        return prefix + self.name.replace("_", "-")

    def dest(self, prefix: str) -> str:
        """Where argparse or pytest keep the parsed value (`--act-reference-python` -> `act_reference_python`)."""
        return self.flag(prefix).lstrip("-").replace("-", "_")

    def kwargs(self) -> dict[str, Any]:
        """`add_argument`/`addoption` keywords (argparse and pytest take the same)."""
        if self.flag_only:
            return {"action": "store_true", "default": False, "help": self.help}
        shown = self.unset if self.default is None else self.default
        return {"default": self.default, "choices": self.choices, "type": self.type,
                "help": f"{self.help} (default: {shown})" if shown else self.help}


_SPECS = ("MODULE:ATTR (ACTConfig -> nn.Module), a built-in (concat: act_equiv's own tensor-concat ACT; legacy; "
          "lerobot: the installed LeRobot; mutant:NAME), or lerobot@REV: LeRobot's ACT at a git revision (commit, tag, "
          "branch, HEAD, WORKTREE) of --lerobot-repo")

GATE: tuple[Option, ...] = (
    Option("target", "concat", "model under test: " + _SPECS),
    Option("reference", "legacy", "what the target is compared with: " + _SPECS),
    Option("reference_python", None, "run the reference in a worker on this Python interpreter (another torch, "
                                     "a venv with a released LeRobot)", unset="this interpreter"),
    Option("target_python", None, "run the target in a worker on this Python interpreter",
           unset="this interpreter"),
    Option("worker_timeout", WORKER_TIMEOUT, "seconds a side in a worker may take for one request before it counts "
                                             "as hung (killed, a worker_failed finding)", type=float),
    Option("lerobot_repo", None, "the LeRobot git repository (a clone or a bare repository) of lerobot@REV specs",
           unset="the current directory"),
    Option("device", "cpu", "device of every form", DEVICES),
    Option("dtype", "float32", "model and input dtype", DTYPES),
    Option("backend", "aot_eager", "torch.compile backend of the compiled form, or none: eager forms only",
           (*BACKENDS, "none"), gate_values={"none": None}),
    Option("mode", None, "torch.compile mode, inductor only", MODES,
           unset="torch's"),
    Option("dynamic", "auto", "torch.compile dynamic=: auto is None, dynamo decides", ("auto", "true", "false"),
           gate_values={"auto": None, "true": True, "false": False}),
    Option("autocast", "none", "mixed precision: every form but the float64 reference under torch.autocast in "
                               "this dtype", ("none", *AUTOCAST), gate_values={"none": None}),
    Option("forms", "compiled", "the target's forms judged beside its eager one, comma-separated, run where the "
                                "target runs (a worker too): compiled (torch.compile) and the deployment exports "
                                + ", ".join(DEPLOYED) + " (eval cases; onnx needs pip install 'act-equiv[export]')"),
    Option("onnx_exporter", "dynamo", "the onnx form's exporter: torch.onnx.export with dynamo=True, or the "
                                      "TorchScript exporter", ONNX_EXPORTERS),
    Option("train_steps", None, "optimizer steps of each training case's trajectory (each side trains its own policy "
                                "as its training does; compiled, and the whole step compiled, against eager); 0: "
                                "none", type=int, unset="the profile's: 3, thorough 8"),
    Option("trained_structures", 1, "model structures per run whose training trajectory is compiled too (the model "
                                    "compiled, and the whole step: forward, backward, clipping, optimizer step), "
                                    "each then compiled again in float64: about 40 s a structure with aot_eager, "
                                    "minutes with inductor, on 2 CPU cores", type=int),
    Option("baseline", None, "a known-findings file (act-equiv check --update-baseline writes one): the failures it "
                             "lists are reported as known and the search goes on; any other failure fails",
           unset="none"),
    Option("strict", False, "fail the warning classes too: a rounding-only difference between reference and target "
                            "(float64 runs agree), both sides raising alike, and a stale --baseline entry",
           flag_only=True),
)
"""The gate's settings: `check` takes them all, the plugin as `--act-*`, `mutants` and `bench` the ones they use."""

SEARCH: tuple[Option, ...] = (
    Option("profile", None, "Hypothesis profile: ci, dev, thorough",
           unset="$ACT_EQUIV_PROFILE, else ci under CI, else dev"),
    Option("max_examples", None, "cases of the compiled search, per mutant in `mutants`; the eager sweep draws a "
                                 "multiple", type=int, unset="the profile's"),
    Option("time_budget", None, "stop drawing random cases after SECONDS, per mutant in `mutants`; the covering "
                                "array always runs whole", type=float),
    Option("seed", None, "Hypothesis seed (reproducible draws)", type=int),
    Option("shrink_budget", SHRINK_BUDGET, "seconds a found failure may spend shrinking; then the smallest case so far "
                                           "is reported (0: the first failing case)", type=float),
)
"""How `check` and `mutants` (per mutant) search: `act_equiv.settings.Search`. The plugin has none of these: pytest
and Hypothesis own them."""
REPORT_DIR = Option("report_dir", "reports", "where the run's report directory is written")

OPTIONS: dict[str, Option] = {option.name: option for option in (*GATE, *SEARCH, REPORT_DIR)}
SIDES = ("reference", "target", "reference_python", "target_python", "lerobot_repo")
"""The options that say what is compared and where it runs (`replay` may change them from the report's)."""


def select(*names: str, **changes: dict[str, Any]) -> list[Option]:
    """The named options, each with its `changes` (`backend={"default": "inductor"}`) where a command differs."""
    return [dataclasses.replace(OPTIONS[name], **changes.get(name, {})) for name in names]


def add_arguments(parser: Any, options: Iterable[Option]) -> None:
    """Add `--name` arguments to an argparse parser."""
    for option in options:
        parser.add_argument(option.flag("--"), **option.kwargs())


def add_to_group(group: Any, options: Iterable[Option], prefix: str) -> None:
    """Add `<prefix>name` options to a pytest option group."""
    for option in options:
        group.addoption(option.flag(prefix), **option.kwargs())


def gate_keywords(values: Mapping[str, Any]) -> dict[str, Any]:
    """Parsed values by option name -> `Settings` keywords, for every gate option present in `values`."""
    return {option.name: option.gate_values.get(values[option.name], values[option.name])
            for option in GATE if option.name in values}


def search_keywords(values: Mapping[str, Any]) -> dict[str, Any]:
    """Parsed values by option name -> `Search` keywords, for every search option present in `values`."""
    return {option.name: values[option.name] for option in SEARCH if option.name in values}


def option_values(settings: Mapping[str, Any]) -> dict[str, Any]:
    """`gate_keywords` backwards: settings by option name as a report's environment states them (`backend: null`,
    `dynamic: true`, `strict: true`) -> the option values that give them; a missing one is the default.
    `replay` rebuilds its gate from a report through this and `gate_keywords`."""
    values = {}
    for option in GATE:
        value = settings.get(option.name, option.default)
        values[option.name] = {gate: text for text, gate in option.gate_values.items()}.get(value, value)
    return values
