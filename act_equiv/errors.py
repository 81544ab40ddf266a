"""act_equiv's errors: one hierarchy, so a caller catches `UsageError` for every bad input and nothing else.

A usage error is the user's to fix (a bad option, target or config); a finding (a target that diverges or raises)
is never an exception of act_equiv's but a verdict. Messages name the setting as the library knows it
(`device='cuda'`); the command line and the pytest plugin show their own flag for it (`--device`, `--act-device`)
through `UsageError.for_flags`.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["ActEquivError", "ConfigError", "InputMutatedError", "PolicyApiMissingError", "TargetError", "UsageError"]


class ActEquivError(Exception):
    """Base of every error act_equiv raises on purpose."""


class UsageError(ActEquivError, ValueError):
    """Bad input: the CLI exits 2 with this message, the plugin reports it as a usage error.

    `settings` are the names the message writes as `name=value` (`device='tpu' is invalid: cpu or cuda`)."""

    def __init__(self, message: str, *settings: str) -> None:
        super().__init__(message)
        self.settings = settings

    def for_flags(self, prefix: str = "--") -> str:
        """The message with each setting written as the caller's flag: `--device 'tpu' is invalid: ...`."""
        if not self.settings:
            return str(self)
        names = "|".join(re.escape(name) for name in self.settings)
        return re.sub(rf"\b({names})=", lambda m: f"{prefix}{m.group(1).replace('_', '-')} ", str(self))


class TargetError(UsageError):
    """The target cannot be resolved or imported."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "target")


class ConfigError(UsageError):
    """An invalid `ACTConfig` field: names the field, the value and the allowed values."""

    def __init__(self, field_name: str, value: Any, allowed: str) -> None:
        self.field = field_name
        self.value = value
        self.allowed = allowed
        super().__init__(f"ACTConfig.{field_name}={value!r} is invalid: {allowed}")


class PolicyApiMissingError(ActEquivError, AttributeError):
    """A side's policy lacks a method the policy level calls (an older LeRobot without `predict_action_chunk`): that
    level is `unsupported` for the side, with the reason, not a crash of the side."""


class InputMutatedError(ActEquivError, RuntimeError):
    """A side wrote into a tensor of the batch it was given (an in-place op on the caller's input): LeRobot's training
    loop and a robot loop re-use those tensors, so that is a finding (`input_mutated`), whatever the outputs."""

    def __init__(self, keys: list[str], where: str) -> None:
        self.keys = keys
        super().__init__(f"{where} wrote into its input {', '.join(keys)} (an in-place op on the caller's tensor)")
