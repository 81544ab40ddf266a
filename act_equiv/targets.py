"""Targets: the model under test, named on the command line as `MODULE:ATTR` or a built-in name.

The contract: `MODULE:ATTR` is a callable taking an `act_equiv.ACTConfig` and returning an `nn.Module` that
follows LeRobot's ACT contract (batch keys, `(actions, (mu, log_sigma_x2))`, LeRobot's state_dict layout).
A class taking the config qualifies.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from act_equiv.config import ACTConfig
from act_equiv.models import ACT, LegacyACT

Factory = Callable[[ACTConfig], nn.Module]


class TargetError(ValueError):
    """The target cannot be resolved: a usage error, not a finding."""


@dataclass(frozen=True)
class Target:
    name: str
    factory: Factory
    unsupported: Callable[[ACTConfig], str | None] = lambda config: None
    """Why this target cannot express a config (the case is skipped with that reason), or None."""


BUILTIN: dict[str, Callable[[], Target]] = {
    "concat": lambda: Target("concat", ACT),
    "legacy": lambda: Target("legacy", LegacyACT),
}


def register(name: str, loader: Callable[[], Target]) -> None:
    """Add a built-in target name (mutants and the LeRobot adapter register themselves this way)."""
    BUILTIN[name] = loader


def resolve(spec: str) -> Target:
    """`concat`, `legacy`, another registered name, or `MODULE:ATTR`."""
    import act_equiv.lerobot  # noqa: F401 - registers "lerobot"; LeRobot itself is imported only when resolved
    importlib.import_module("act_equiv.mutants")  # registers the "mutant:<name>" targets
    if spec in BUILTIN:
        return BUILTIN[spec]()
    if spec.count(":") != 1:
        raise TargetError(
            f"--target {spec!r} is invalid: use MODULE:ATTR (a callable taking an ACTConfig and returning an "
            f"nn.Module) or one of {sorted(BUILTIN)}"
        )
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise TargetError(f"--target {spec!r}: cannot import module {module_name!r} ({error})") from error
    factory = getattr(module, attr, None)
    if factory is None:
        raise TargetError(f"--target {spec!r}: module {module_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise TargetError(f"--target {spec!r}: {attr!r} is a {type(factory).__name__}, not a callable")
    return Target(spec, factory)

