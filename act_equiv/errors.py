"""act_equiv's errors, every one: a caller catches `UsageError` for every bad input and nothing else.

A usage error is the user's to fix (a bad option, target or config). A finding (a target that diverges or raises)
is never raised to the caller but judged: the exceptions below `FindingError` are raised while a form or side runs,
recorded (`act_equiv.run.records.ErrorRecord.capture`, which reads each class's `kind`) and turned into a verdict by
the oracle. Only torch's own exceptions need mapping to a kind (`act_equiv.run.records.error_kind`).

Messages name the setting as the library knows it (`device='cuda'`); the command line and the pytest plugin show
their own flag for it (`--device`, `--act-device`) through `UsageError.for_flags`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

__all__ = ["ActEquivError", "CompileError", "ConfigError", "ErrorKind", "ExportError", "ExportSpecialisedError",
           "FindingError", "GraphBreakError", "InputMutatedError", "NotCompiledError", "PolicyApiMissingError",
           "RecompileLimitError", "RemoteError", "TargetError", "UsageError", "WorkerError"]

ErrorKind = Literal["raised", "not_compiled", "graph_break", "specialised", "worker_failed", "input_mutated",
                    "unsupported"]
"""What an error raised by a form or side means to the oracle (`act_equiv.oracle.judge`)."""


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


class FindingError(ActEquivError):
    """Raised while a form or side runs, and judged rather than raised to the caller: `kind` says what it means."""

    kind: ClassVar[ErrorKind] = "raised"


class PolicyApiMissingError(FindingError, AttributeError):
    """A side's policy lacks a method the policy level calls (an older LeRobot without `predict_action_chunk`): that
    level is `unsupported` for the side, with the reason, not a crash of the side."""

    kind = "unsupported"


class InputMutatedError(FindingError, RuntimeError):
    """A side wrote into a tensor of the batch it was given (an in-place op on the caller's input): LeRobot's training
    loop and a robot loop re-use those tensors, so that is a finding (`input_mutated`), whatever the outputs."""

    kind = "input_mutated"

    def __init__(self, keys: list[str], where: str) -> None:
        self.keys = keys
        super().__init__(f"{where} wrote into its input {', '.join(keys)} (an in-place op on the caller's tensor)")


class CompileError(FindingError, RuntimeError):
    """torch.compile refused the module; `reason` is torch's first line plus the user-code location."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class GraphBreakError(CompileError):
    """A graph break under fullgraph=True."""

    kind = "graph_break"


class NotCompiledError(CompileError):
    """torch.compile ran nothing compiled (dynamo disabled, or every frame skipped) and said so."""

    kind = "not_compiled"


class RecompileLimitError(CompileError):
    """Dynamo hit the recompile limit and refused to compile (fullgraph=True, or the fail switch was on)."""

    kind = "not_compiled"


class ExportSpecialisedError(FindingError, RuntimeError):
    """A deployment export does not serve every batch size: it was specialised to its example batch, or refused
    another."""

    kind = "specialised"


class ExportError(FindingError, RuntimeError):
    """The exporter (or the runtime's loading of its output) refused the target; the message is the exporter's."""


class WorkerError(FindingError, RuntimeError):
    """A side's worker process hung or died; the run goes on with a fresh one."""

    kind = "worker_failed"


class RemoteError(FindingError, RuntimeError):
    """The side raised inside its worker; carries what the worker recorded (type, kind, message, innermost frames)."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        super().__init__(f"{record['type']}: {record['message']}")
