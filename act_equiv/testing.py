"""Switches for testing act_equiv and for writing test targets: never used by a check of a real target.

They inject what the oracle must catch (inductor's own miscompile switch, a graph break, a target that misbehaves only
while compiled or exported) or force what a check must survive (a recompile limit of 1, dynamo failing at the limit).
Like `act_equiv.compat`, they touch torch's private configuration, through `compat`'s accessors (which tests of old
releases replace); what `compat` holds, a check runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from act_equiv import compat

__all__ = ["MISCOMPILE_BUGS", "MISCOMPILE_OPS", "fail_on_recompile_limit", "fail_on_recompile_limit_supported",
           "graph_break", "inject_miscompile", "is_compiling", "is_exporting", "recompile_limit_set"]


@contextlib.contextmanager
def recompile_limit_set(n: int) -> Iterator[None]:
    """Temporarily set the recompile limit (under either name); restored on exit."""
    if n < 1:
        raise ValueError(f"recompile limit must be >= 1, got {n}")
    with compat.patched(compat.dynamo_config(), {compat.recompile_limit_name(): int(n)}):
        yield


def _fail_on_recompile_limit_name() -> str | None:
    config = compat.dynamo_config()
    for name in ("fail_on_recompile_limit_hit", "fail_on_cache_limit_hit"):  # torch >= 2.7, torch 2.6
        if hasattr(config, name):
            return name
    return None  # torch <= 2.5


def fail_on_recompile_limit_supported() -> bool:
    """Whether this torch can turn the silent eager fallback at the recompile limit into an exception."""
    return _fail_on_recompile_limit_name() is not None


@contextlib.contextmanager
def fail_on_recompile_limit(enabled: bool = True) -> Iterator[bool]:
    """Make hitting the recompile limit raise instead of running eager; yields whether that is in effect.

    A no-op yielding False on torch <= 2.5, which lacks the switch: callers must then rely on
    `CompiledForm`'s runtime detector.
    """
    name = _fail_on_recompile_limit_name()
    if name is None:
        yield False
        return
    with compat.patched(compat.dynamo_config(), {name: bool(enabled)}):
        yield bool(enabled)


_PUBLIC_IS_COMPILING: Callable[[], bool] | None = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
if _PUBLIC_IS_COMPILING is None:
    import torch._dynamo  # torch 2.2: is_compiling lives here only


def is_compiling() -> bool:
    """Whether dynamo is tracing the caller now (for tests and mutants that behave differently only when
    compiled): `torch.compiler.is_compiling` from torch 2.3, `torch._dynamo.is_compiling` before."""
    if _PUBLIC_IS_COMPILING is not None:
        return bool(_PUBLIC_IS_COMPILING())
    return bool(torch._dynamo.is_compiling())


def graph_break() -> None:
    """Force a dynamo graph break here (for tests and mutants); a no-op when running eagerly."""
    import torch._dynamo

    torch._dynamo.graph_break()


# -- bug injection -------------------------------------------------------------------------------------------------
MISCOMPILE_OPS: tuple[str, ...] = ("relu", "log1p")
MISCOMPILE_BUGS: tuple[str, ...] = ("accuracy", "runtime_error", "compile_error")

# inductor config names per (op, device); the cpp (CPU) switches exist since 2.0, triton's relu one too.
_MISCOMPILE_SWITCHES: dict[tuple[str, str], str] = {
    ("relu", "cpu"): "cpp.inject_relu_bug_TESTING_ONLY",
    ("relu", "cuda"): "triton.inject_relu_bug_TESTING_ONLY",
    ("log1p", "cpu"): "cpp.inject_log1p_bug_TESTING_ONLY",
}


@contextlib.contextmanager
def inject_miscompile(op: str = "relu", bug: str = "accuracy", device: str | None = None,
                      reset_dynamo: bool = True) -> Iterator[list[str]]:
    """Turn on inductor's own bug-injection switch so an oracle can prove it catches a real miscompile.

    `bug="accuracy"` makes inductor emit `x + 1` for `op` (relu or log1p) in generated C++ (device "cpu") or Triton
    ("cuda"); `device=None` patches every device this torch has a switch for. Yields the config names set. Only
    graphs compiled by inductor inside the block are affected, so dynamo is reset on entry and on exit by default
    (a buggy graph compiled here must not outlive the block). Raises ValueError when this torch has no switch.
    """
    if op not in MISCOMPILE_OPS:
        raise ValueError(f"op={op!r}: allowed {list(MISCOMPILE_OPS)}")
    if bug not in MISCOMPILE_BUGS:
        raise ValueError(f"bug={bug!r}: allowed {list(MISCOMPILE_BUGS)}")
    if op == "log1p" and bug != "accuracy":
        raise ValueError("the log1p switch only knows bug='accuracy'")
    devices = ("cpu", "cuda") if device is None else (device,)
    config = compat.inductor_config()
    names = [
        name for (switch_op, switch_device), name in _MISCOMPILE_SWITCHES.items()
        if switch_op == op and switch_device in devices and compat.config_entry(config, name) is not None
    ]
    if not names:
        raise ValueError(f"torch {torch.__version__} has no inductor bug-injection switch for op={op!r} on "
                         f"{list(devices)}")
    if reset_dynamo:
        compat.reset()
    try:
        with compat.patched(config, dict.fromkeys(names, bug)):
            yield names
    finally:
        if reset_dynamo:
            compat.reset()


def is_exporting() -> bool:
    """Whether the caller is being traced by an exporter (torch.export, the dynamo ONNX exporter, or the TorchScript
    ONNX exporter), for tests that inject an exporter-only bug."""
    exporting = getattr(torch.compiler, "is_exporting", None)  # torch >= 2.4
    return bool(exporting is not None and exporting()) or bool(torch.onnx.is_in_onnx_export())
