"""Targets: the model under test, named on the command line as `MODULE:ATTR` or a built-in name.

The contract: `MODULE:ATTR` is a callable taking an `act_equiv.ACTConfig` and returning an `nn.Module` that
follows LeRobot's ACT contract (batch keys, `(actions, (mu, log_sigma_x2))`, LeRobot's state_dict layout).
A class taking the config qualifies.

Built-in names come from one static table (name -> the module that provides it), imported on demand like
LeRobot's `get_policy_class`: LeRobot is imported only when `lerobot` is resolved, the mutant catalogue only for
`mutant:NAME`, and no module registers itself on import.
"""

from __future__ import annotations

import importlib
from typing import Any

from act_equiv.errors import TargetError
from act_equiv.targets.target import Factory, Target

__all__ = ["BUILTIN", "Factory", "Target", "TargetError", "resolve", "resolve_in_worker"]

BUILTIN: dict[str, str] = {
    "concat": "act_equiv.models:ACT",
    "legacy": "act_equiv.models:LegacyACT",
    "lerobot": "act_equiv.targets.lerobot:load",
    "mutant:NAME": "act_equiv.targets.mutants:load",
}
"""Built-in name -> `module:attr`: a model class (its factory), or a `load(spec) -> Target` of its module."""


def resolve(spec: str) -> Target:
    """A built-in name (`concat`, `legacy`, `lerobot`, `mutant:NAME`) or `MODULE:ATTR`."""
    if spec.startswith("mutant:"):
        return _attr(BUILTIN["mutant:NAME"])(spec)
    if spec == "lerobot":
        return _attr(BUILTIN[spec])(spec)
    if spec in BUILTIN:
        return Target(spec, _attr(BUILTIN[spec]))
    if spec.count(":") != 1:
        raise TargetError(
            f"target={spec!r} is invalid: use MODULE:ATTR (a callable taking an ACTConfig and returning an "
            f"nn.Module) or one of {sorted(BUILTIN)}"
        )
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise TargetError(f"target={spec!r}: cannot import module {module_name!r} ({error})") from error
    factory = getattr(module, attr, None)
    if factory is None:
        raise TargetError(f"target={spec!r}: module {module_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise TargetError(f"target={spec!r}: {attr!r} is a {type(factory).__name__}, not a callable")
    return Target(spec, factory)


def resolve_in_worker(spec: str, policies: str | None = None, about: dict[str, Any] | None = None) -> Target:
    """`resolve` as a worker process does it (`act_equiv.run.worker`): `lerobot` from a materialised revision names
    where its policies live (`policies`) and what to report about it (`about`)."""
    if spec == "lerobot" and policies is not None:
        return _attr(BUILTIN["lerobot"])(spec, policies, about)
    return resolve(spec)


def _attr(path: str) -> Any:
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)
