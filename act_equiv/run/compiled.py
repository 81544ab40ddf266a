"""Compile hygiene: a torch.compile'd module that proves, call by call, that compiled code actually ran.

A compiled comparison that silently runs eager passes while testing nothing (LeRobot issue #4114; the spec's
"silent eager fallback trap"). `CompiledForm` therefore compiles through a counting backend whose compiled graphs
count their own executions: a call during which no compiled graph ran is recorded as `fell_back_to_eager`, with
dynamo's reason when it gave one. All torch-private access goes through `act_equiv.compat`.

One counting backend object exists per (backend, mode, dynamic) in the process: dynamo guards on the backend's
identity, so a fresh backend object per model forces a recompile each time and, after `recompile_limit` (8)
models, runs them all eagerly. With a shared object, fresh models of one structure share one compiled graph; the
per-form counts come from snapshots of the shared counters taken around each call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from act_equiv import compat
from act_equiv.errors import GraphBreakError, NotCompiledError, RecompileLimitError
from act_equiv.settings import BACKENDS

__all__ = [
    "CompileStats",
    "CompiledForm",
    "CountingBackend",
    "counting_backend",
]

class CountingBackend:
    """A dynamo backend that counts compilations and executions of its graphs, then delegates to a real backend.

    `frames`: graphs compiled (invocations by dynamo). `graph_runs`: executions of any graph it compiled, the
    proof that compiled code ran. `ops_run`: the operations (FX call nodes) of the graphs executed, the proof that
    more than a sliver of it did.
    """

    def __init__(self, backend: str = "inductor", mode: str | None = None, dynamic: bool | None = None) -> None:
        self.backend, self.mode, self.dynamic = backend, mode, dynamic
        self._compiler = (compat.inductor_backend(mode, dynamic) if backend == "inductor"
                          else compat.lookup_backend(backend))
        self.frames = 0
        self.graph_runs = 0
        self.ops_run = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
        self.frames += 1
        ops = sum(node.op in ("call_function", "call_method", "call_module") for node in gm.graph.nodes)
        compiled = self._compiler(gm, example_inputs)

        def run(*args: Any) -> Any:
            self.graph_runs += 1
            self.ops_run += ops
            return compiled(*args)

        # Keep the calling convention the real backend chose (`_boxed_call`: arguments as one list). Copy nothing
        # else: torch 2.2's dynamo follows `_torchdynamo_orig_callable` and would bypass this counter.
        if getattr(compiled, "_boxed_call", False):
            run._boxed_call = True  # type: ignore[attr-defined]
        return run

    def __repr__(self) -> str:
        return f"CountingBackend(backend={self.backend!r}, mode={self.mode!r}, dynamic={self.dynamic!r})"


_SHARED: dict[tuple[str, str | None, bool | None], CountingBackend] = {}


def counting_backend(backend: str = "inductor", mode: str | None = None,
                     dynamic: bool | None = None) -> CountingBackend:
    """The process-wide counting backend for (backend, mode, dynamic); see the module docstring for why shared."""
    key = (backend, None if mode == "default" else mode, dynamic)
    if key not in _SHARED:
        _SHARED[key] = CountingBackend(*key)
    return _SHARED[key]


@dataclass
class CompileStats:
    """What compiling and calling one `CompiledForm` did.

    `graphs` is the number of compiled graphs the latest call executed (1 for a whole-forward graph, more with
    graph breaks, 0 when that call ran eagerly). `recompiles` counts graphs compiled after the first call.
    `graph_breaks` / `break_reasons` are the distinct breaks seen at compile time or through `explain`.
    `compile_seconds` is the wall time of the calls that compiled something.
    """

    frames_compiled: int = 0
    graphs: int = 0
    recompiles: int = 0
    graph_breaks: int = 0
    break_reasons: list[str] = field(default_factory=list)
    fell_back_to_eager: bool = False
    reason: str | None = None
    compile_seconds: float = 0.0
    calls: int = 0
    eager_calls: int = 0

    def since(self, earlier: CompileStats) -> CompileStats:
        """The counts accumulated after snapshot `earlier` (booleans/reasons: whether it happened since)."""
        new_fallback = self.eager_calls > earlier.eager_calls
        return CompileStats(
            frames_compiled=self.frames_compiled - earlier.frames_compiled,
            graphs=self.graphs,
            recompiles=self.recompiles - earlier.recompiles,
            graph_breaks=self.graph_breaks - earlier.graph_breaks,
            break_reasons=self.break_reasons[len(earlier.break_reasons):],
            fell_back_to_eager=new_fallback,
            reason=self.reason if new_fallback else None,
            compile_seconds=self.compile_seconds - earlier.compile_seconds,
            calls=self.calls - earlier.calls,
            eager_calls=self.eager_calls - earlier.eager_calls,
        )


@dataclass(frozen=True)
class _Counters:
    frames: int
    graph_runs: int
    breaks_logged: int
    unimplemented: dict[str, int]


class CompiledForm:
    """`module` under torch.compile, with `stats` proving whether each call ran compiled code.

    `mode` applies only to backend="inductor" (torch.compile's rule). `fullgraph=True` turns a graph break into
    `GraphBreakError`; hitting the recompile limit raises `RecompileLimitError` under fullgraph=True, and otherwise
    shows as `stats.fell_back_to_eager`.
    """

    def __init__(self, module: nn.Module, backend: str = "inductor", mode: str | None = None,
                 dynamic: bool | None = None, fullgraph: bool = True) -> None:
        _validate(backend, mode, dynamic)
        self.module = module
        self.backend, self.mode, self.dynamic, self.fullgraph = backend, mode, dynamic, fullgraph
        self.counting = counting_backend(backend, mode, dynamic)
        self.compiled = torch.compile(module, backend=self.counting, fullgraph=fullgraph, dynamic=dynamic)
        self.stats = CompileStats()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        before = self._counters()
        start = time.perf_counter()
        try:
            output = self.compiled(*args, **kwargs)
        except Exception as exc:
            if compat.is_recompile_limit_error(exc):
                raise RecompileLimitError(
                    f"dynamo hit {compat.recompile_limit_name()}={compat.recompile_limit()} and refused to compile: "
                    f"{compat.describe_exception(exc)}") from exc
            if compat.is_graph_break_error(exc):
                raise GraphBreakError(compat.describe_exception(exc)) from exc
            if compat.is_no_compiled_frames_error(exc):
                # fullgraph=True's own detection of what would otherwise be a silent eager run.
                self._record(before, self._counters(), time.perf_counter() - start)
                raise NotCompiledError(f"no compiled graph ran: {compat.describe_exception(exc)}") from exc
            raise
        self._record(before, self._counters(), time.perf_counter() - start)
        return output

    # -- bookkeeping -------------------------------------------------------------------------------------------
    def _counters(self) -> _Counters:
        return _Counters(self.counting.frames, self.counting.graph_runs, compat.graph_break_reasons_count(),
                         compat.unimplemented_counters())

    def _record(self, before: _Counters, after: _Counters, seconds: float) -> None:
        stats = self.stats
        frames = after.frames - before.frames
        runs = after.graph_runs - before.graph_runs
        if stats.calls > 0:
            stats.recompiles += frames
        stats.calls += 1
        stats.frames_compiled += frames
        stats.graphs = runs
        if frames:
            stats.compile_seconds += seconds
            self._add_breaks(compat.graph_break_reasons_since(before.breaks_logged))
        if runs == 0:
            stats.eager_calls += 1
            if not stats.fell_back_to_eager:
                stats.fell_back_to_eager = True
                stats.reason = _fallback_reason(compat.counter_delta(before.unimplemented, after.unimplemented),
                                                after.unimplemented)

    def _add_breaks(self, reasons: list[str]) -> None:
        for reason in reasons:
            if reason not in self.stats.break_reasons:
                self.stats.break_reasons.append(reason)
        self.stats.graph_breaks = max(self.stats.graph_breaks, len(self.stats.break_reasons))


def _fallback_reason(new: dict[str, int], all_seen: dict[str, int]) -> str:
    """Why a call ran no compiled graph, from dynamo's "unimplemented" counters (new ones first)."""
    limit = f"{compat.recompile_limit_name()}={compat.recompile_limit()}"
    for message in new:
        if compat.is_recompile_limit_reason(message):
            return f"dynamo hit the recompile limit ({limit}) and ran the call eagerly: {compat.first_line(message)}"
    if new:
        return f"dynamo could not compile and ran the call eagerly: {compat.first_line(next(iter(new)))}"
    if any(compat.is_recompile_limit_reason(message) for message in all_seen):
        return (f"no compiled graph ran; dynamo hit the recompile limit ({limit}) earlier in this process and now "
                "runs this code eagerly (call compat.reset() between model structures)")
    return "no compiled graph ran during the call (dynamo ran it eagerly without saying why)"


def _validate(backend: str, mode: str | None, dynamic: bool | None) -> None:
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a backend name (one of {list(BACKENDS)}), got {backend!r}")
    if backend not in BACKENDS and backend not in compat.backend_names():
        raise ValueError(f"backend={backend!r} is not a registered dynamo backend; use one of {list(BACKENDS)}")
    if mode is not None:
        if backend != "inductor":
            raise ValueError(f"mode={mode!r} only applies to backend='inductor' (torch.compile's rule); with "
                             f"backend={backend!r} pass mode=None")
        if mode not in compat.inductor_modes():
            raise ValueError(f"mode={mode!r} is not an inductor mode; allowed: None, {compat.inductor_modes()}")
    if dynamic not in (None, True, False):
        raise ValueError(f"dynamic={dynamic!r}: allowed None, True, False")

