"""The one place that touches private torch APIs (`torch._dynamo`, `torch._inductor`).

Everything here isolates a difference between torch releases 2.2 .. 2.15, so that the rest of act_equiv reads one
stable vocabulary. Branches test for the *presence* of a name rather than a version number: a backport or an alias
then does the right thing by itself. The release each branch belongs to is noted where it was looked up.

Facts these functions rely on (checked against torch 2.13's source, and older sources where noted):
- `torch._dynamo.config.recompile_limit` was called `cache_size_limit` until PyTorch PR #143709 (Dec 2024, first
  released in 2.7); newer releases keep the old name as an alias. Default 8 in every supported release.
- `fail_on_cache_limit_hit` appeared in PR #136767 (Sep 2024, torch 2.6) and was renamed with the rest to
  `fail_on_recompile_limit_hit`; torch <= 2.5 has neither, so a recompile-limit hit there is always silent
  (except under fullgraph=True, which raises in every release).
- When the limit is hit, dynamo records an `Unsupported` in `torch._dynamo.utils.counters["unimplemented"]`:
  "cache_size_limit reached" (<= 2.6), "Dynamo recompile limit exceeded ..." (2.13). Only the first hit per code
  object is recorded: afterwards dynamo marks the code run-only and stays silent.
- `torch._dynamo.explain(fn)(*args)` returns an `ExplainOutput` (2.1+) and calls `torch._dynamo.reset()` before and
  after: explaining drops every compiled cache entry in the process.
- TF32 is switched per backend op by `fp32_precision` ("ieee" / "tf32") since torch 2.9; older releases have the
  `allow_tf32` booleans. Mixing the two raises in 2.9+ ("you have used a mix of the legacy and new APIs").
- `torch.autocast` only warns for a (device, dtype) pair it cannot apply (CUDA without a device, float64) and
  then runs without autocast, which would make an autocast run test nothing. CPU fp16 autocast applies on 2.2.2
  but layer_norm has no Half CPU kernel there ("LayerNormKernelImpl" not implemented for 'Half'); on 2.13.0
  it runs. CPU bf16 runs on both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "ExplainResult",
    "aoti_package",
    "aoti_supported",
    "autocast_supported",
    "backend_names",
    "batch_dim",
    "clear_skip_marks",
    "config_entry",
    "counter_delta",
    "describe_exception",
    "dynamo_config",
    "explain",
    "export_program",
    "exporter_message",
    "fallback_random",
    "first_line",
    "fresh_modules_share_graphs",
    "graph_break_reasons_count",
    "graph_break_reasons_since",
    "inductor_backend",
    "inductor_config",
    "inductor_modes",
    "is_export_specialisation_error",
    "is_graph_break_error",
    "is_no_compiled_frames_error",
    "is_recompile_limit_error",
    "is_recompile_limit_reason",
    "lookup_backend",
    "mark_batch_dynamic",
    "onnx_dynamo_supported",
    "onnx_export",
    "patched",
    "quiet_dynamo",
    "recompile_limit",
    "recompile_limit_name",
    "reset",
    "tf32_disabled",
    "tf32_enabled",
    "torch_version",
    "unimplemented_counters",
]


# -- config access (tests replace these two to imitate other releases) ----------------------------------------------
def dynamo_config() -> Any:
    import torch._dynamo.config

    return torch._dynamo.config


def inductor_config() -> Any:
    import torch._inductor.config

    return torch._inductor.config


def _backends() -> Any:
    return torch.backends


_MISSING = object()


def config_entry(root: Any, dotted: str) -> tuple[Any, str] | None:
    """(owner, attribute) for `dotted` under `root`, or None when any part is missing in this release."""
    *parents, leaf = dotted.split(".")
    owner = root
    for part in parents:
        owner = getattr(owner, part, _MISSING)
        if owner is _MISSING:
            return None
    if not hasattr(owner, leaf):
        return None
    return owner, leaf


def _value(root: Any, dotted: str) -> Any:
    """The value of `dotted` under `root`, or None when this release lacks it."""
    resolved = config_entry(root, dotted)
    return None if resolved is None else getattr(*resolved)


@contextlib.contextmanager
def patched(root: Any, values: Mapping[str, Any]) -> Iterator[None]:
    """Set `values` (dotted names under `root`, all known to exist) and restore the old values on exit.

    Plain setattr/restore rather than torch's `config.patch` so the same code serves torch's config modules and the
    stand-ins the unit tests use for older releases.
    """
    saved: list[tuple[Any, str, Any]] = []
    try:
        for dotted, value in values.items():
            resolved = config_entry(root, dotted)
            if resolved is None:
                raise AttributeError(f"{dotted} does not exist in this torch ({torch.__version__})")
            owner, leaf = resolved
            saved.append((owner, leaf, getattr(owner, leaf)))
            setattr(owner, leaf, value)
        yield
    finally:
        for owner, leaf, old in reversed(saved):
            setattr(owner, leaf, old)


# -- version -----------------------------------------------------------------------------------------------------
def torch_version() -> tuple[int, int]:
    """(major, minor) of the running torch, e.g. (2, 13); for reports and the rare branch a name can't decide."""
    match = re.match(r"(\d+)\.(\d+)", str(torch.__version__))
    if match is None:
        raise ValueError(f"unparseable torch.__version__ {torch.__version__!r}")
    return int(match.group(1)), int(match.group(2))


# -- recompile limit -----------------------------------------------------------------------------------------------
def recompile_limit_name() -> str:
    """The dynamo config name of the per-code-object recompile limit in this release."""
    config = dynamo_config()
    if hasattr(config, "recompile_limit"):  # torch >= 2.7
        return "recompile_limit"
    if hasattr(config, "cache_size_limit"):  # torch 2.2 .. 2.6
        return "cache_size_limit"
    raise AttributeError(f"torch {torch.__version__} has neither recompile_limit nor cache_size_limit")


def recompile_limit() -> int:
    """How many compiled variants dynamo keeps per code object before it silently runs eager (default 8)."""
    return int(getattr(dynamo_config(), recompile_limit_name()))


def is_recompile_limit_reason(message: str) -> bool:
    """Whether a dynamo counter key or exception message reports the recompile (cache size) limit."""
    return re.search(r"cache[_ ]size[_ ]limit|recompile[_ ]limit|cache limit hit", message, re.IGNORECASE) is not None


# -- RNG, reset, graph breaks -------------------------------------------------------------------------------------
@contextlib.contextmanager
def fallback_random(enabled: bool = True) -> Iterator[None]:
    """Make inductor-compiled random ops draw the same numbers as eager (`inductor.config.fallback_random`).

    Takes effect when a graph is *compiled* inside the block; graphs compiled earlier keep inductor's own RNG.
    """
    with patched(inductor_config(), {"fallback_random": bool(enabled)}):
        yield


@contextlib.contextmanager
def quiet_dynamo() -> Iterator[None]:
    """Dynamo's warnings off for the block (a compiled optimizer step logs that it ignores the profiler's
    `record_function`, once per step function): the run records what compiling did itself."""
    logger = logging.getLogger("torch._dynamo")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def fresh_modules_share_graphs() -> bool:
    """Whether dynamo inlines nn.Module calls (parameters become graph inputs), so fresh instances of one
    structure reuse one compiled graph. Default from torch 2.5, always on later; torch 2.2 guards on each
    instance instead, so every fresh model compiles its own graph (and the recompile-limit trap of sharing
    one backend across many structures does not arise the same way).

    The switch `inline_inbuilt_nn_modules` is absent before it existed (2.2) and deprecated as always-on in
    2.14/2.15 (reading it warns); once it is removed, its absence means always on, so the version decides."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # reading the deprecated switch warns, hasattr too
        inlining = getattr(dynamo_config(), "inline_inbuilt_nn_modules", None)
    return torch_version() >= (2, 5) if inlining is None else bool(inlining)


def clear_skip_marks(module: Any) -> None:
    """Let `module` compile again after a dynamo-disabled call, on releases that guard on module instances.

    torch 2.2 marks every code object that ran while dynamo was disabled as skip-forever, and `reset()` does not
    clear marks on code it never compiled: after one such call, nn.Module calls never compile again in the
    process. This clears the marks of nn.Module's call machinery and of `module`'s forward. Releases that inline
    modules clear them in `reset()` (checked: 2.13-2.15), and there resetting code would drop the graph that
    fresh models of one structure share, so this does nothing.
    """
    if fresh_modules_share_graphs():
        return
    import torch._C._dynamo

    calls = (torch.nn.Module._call_impl, getattr(torch.nn.Module, "_wrapped_call_impl", None), type(module).forward)
    for function in calls:
        if function is not None:
            torch._C._dynamo.eval_frame.reset_code(function.__code__)


def mark_batch_dynamic(batch: dict[str, Any]) -> dict[str, Any]:
    """Mark dim 0 of every tensor of `batch` (a list of cameras too) dynamic for its first compile, so that one
    graph serves every batch size from 2 (`torch._dynamo.maybe_mark_dynamic`: a graph that specialises the batch
    anyway compiles as before, and recompiles at the next size). A no-op on releases without it."""
    import torch._dynamo

    mark = getattr(torch._dynamo, "maybe_mark_dynamic", None)
    if mark is None:
        return batch
    for value in batch.values():
        for tensor in value if isinstance(value, list) else [value]:
            if isinstance(tensor, torch.Tensor):
                mark(tensor, 0)
    return batch


def reset() -> None:
    """Drop every compiled graph and guard in the process (`torch._dynamo.reset`); file caches survive."""
    import torch._dynamo

    torch._dynamo.reset()


# Resolved once, at import: dynamo 2.2 cannot trace a getattr of a name its module lacks.
# -- TF32 and autocast ----------------------------------------------------------------------------------------------
# (backend, op) pairs whose fp32 math TF32 can round: cuBLAS matmuls, cuDNN convolutions and RNNs.
_FP32_PRECISION_OPS: tuple[str, ...] = ("cuda.matmul", "cudnn.conv", "cudnn.rnn")
_ALLOW_TF32_FLAGS: tuple[str, ...] = ("cuda.matmul.allow_tf32", "cudnn.allow_tf32")


def _fp32_precision_api() -> bool:
    return config_entry(_backends(), "cuda.matmul.fp32_precision") is not None  # torch >= 2.9


@contextlib.contextmanager
def tf32_disabled() -> Iterator[None]:
    """Full fp32 (IEEE) matmuls and convolutions on CUDA: TF32 keeps 10 mantissa bits, an error no fp32 tolerance
    in the table was measured for. Uses the `fp32_precision` API where it exists, never both; restored on exit."""
    if _fp32_precision_api():
        values: dict[str, Any] = {f"{op}.fp32_precision": "ieee" for op in _FP32_PRECISION_OPS}
    else:
        values = dict.fromkeys(_ALLOW_TF32_FLAGS, False)
    with patched(_backends(), values):
        yield


def tf32_enabled() -> bool:
    """Whether any CUDA fp32 matmul or convolution may use TF32 now (for reports)."""
    backends = _backends()
    if _fp32_precision_api():
        return any(_value(backends, f"{op}.fp32_precision") == "tf32" for op in _FP32_PRECISION_OPS)
    return any(bool(_value(backends, flag)) for flag in _ALLOW_TF32_FLAGS)


def autocast_supported(device: str, dtype: torch.dtype) -> bool:
    """Whether `torch.autocast(device, dtype)` really autocasts here and the kinds of op ACT is made of (linear,
    conv2d, layer_norm, softmax) run under it. Asked, not assumed: torch only warns for a pair it cannot apply and
    runs without autocast, and torch 2.2 autocasts CPU fp16 but has no Half CPU kernel for layer_norm."""
    import warnings

    functional = torch.nn.functional
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.autocast(device, dtype=dtype):
                one = torch.ones(1, 1, device=device)
                out = functional.linear(one, one)
                image = functional.conv2d(one.view(1, 1, 1, 1), one.view(1, 1, 1, 1))
                functional.softmax(functional.layer_norm(out, (1,)) + image.view(1, 1), dim=-1)
        except (RuntimeError, AssertionError, ValueError):  # no such device, or no kernel for this dtype
            return False
    return out.dtype == dtype


# -- backends ------------------------------------------------------------------------------------------------------
def backend_names() -> list[str]:
    """Every registered dynamo backend name, debug and experimental ones included."""
    import torch._dynamo

    return sorted(torch._dynamo.list_backends(exclude_tags=()))


def lookup_backend(name: str) -> Callable[..., Any]:
    """The compiler function registered under `name` (what `torch.compile(backend=name)` would call)."""
    from torch._dynamo.backends.registry import lookup_backend as _lookup

    return _lookup(name)


def inductor_modes() -> list[str]:
    """The `mode` values torch.compile accepts for inductor in this release ("default", "reduce-overhead", ...)."""
    import torch._inductor

    return list(torch._inductor.list_mode_options())


def inductor_backend(mode: str | None = None, dynamic: bool | None = None) -> Callable[..., Any]:
    """The inductor compiler exactly as `torch.compile(backend="inductor", mode=mode, dynamic=dynamic)` builds it.

    `torch._TorchCompileInductorWrapper(mode, options, dynamic)` has had this positional signature since 2.0; it
    applies the mode's config patches around `compile_fx`.
    """
    if mode is not None and mode not in inductor_modes():
        raise ValueError(f"mode={mode!r} is not an inductor mode; allowed: {inductor_modes()}")
    return torch._TorchCompileInductorWrapper(mode, None, dynamic)  # type: ignore[attr-defined]


# -- counters ------------------------------------------------------------------------------------------------------
def _counters() -> Mapping[str, Mapping[str, int]]:
    from torch._dynamo.utils import counters

    return counters


def unimplemented_counters() -> dict[str, int]:
    """A copy of `counters["unimplemented"]`: message -> count of everything dynamo refused (recompile limit too).

    Keys are torch's full, multi-line messages; `first_line` them for display.
    """
    return dict(_counters().get("unimplemented", {}))


def counter_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """The keys whose count grew from `before` to `after`, with the growth."""
    return {key: n - before.get(key, 0) for key, n in after.items() if n > before.get(key, 0)}


def _graph_break_log() -> Sequence[Any]:
    from torch._dynamo import utils

    return getattr(utils, "graph_break_reasons", ())


def graph_break_reasons_count() -> int:
    """How many graph-break reasons dynamo has logged since the last reset (a snapshot for `..._since`)."""
    return len(_graph_break_log())


def graph_break_reasons_since(count: int) -> list[str]:
    """Readable reasons for the graph breaks dynamo logged after snapshot `count` (all if a reset intervened)."""
    log = _graph_break_log()
    start = count if count <= len(log) else 0
    return [_format_reason(getattr(r, "reason", str(r)), getattr(r, "user_stack", None)) for r in log[start:]]


# -- explain -------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ExplainResult:
    """`torch._dynamo.explain`'s verdict in one shape for every release.

    `break_reasons` are "first line of torch's reason (at file:line in function)".
    """

    graph_count: int
    graph_break_count: int
    break_reasons: list[str]
    op_count: int


def first_line(message: str) -> str:
    """The first non-empty line of a (multi-line) torch message."""
    for line in str(message).splitlines():
        if line.strip():
            return line.strip()
    return ""


def _short_path(filename: str) -> str:
    relative = os.path.relpath(filename) if os.path.isabs(filename) else filename
    return filename if relative.startswith("..") else relative


_HELPERS = frozenset({__file__, os.path.join(os.path.dirname(__file__), "testing.py")})
"""act_equiv's own helper modules, whose frames are never the user's code (`testing.graph_break` breaks in its
caller)."""


def _location(user_stack: Sequence[Any] | None) -> str | None:
    """The innermost user frame of a dynamo stack as "file:line in name" of a dynamo stack, if any."""
    frames = [f for f in user_stack or () if getattr(f, "filename", None) not in _HELPERS] or list(user_stack or ())
    if not frames:
        return None
    frame = frames[-1]  # innermost, skipping this module's own helpers (`graph_break`)
    filename = getattr(frame, "filename", None)
    lineno, name = getattr(frame, "lineno", None), getattr(frame, "name", "")
    if filename is None:
        return None
    return f"{_short_path(filename)}:{lineno} in {name}"


def _format_reason(reason: str, user_stack: Sequence[Any] | None) -> str:
    location = _location(user_stack)
    head = first_line(reason)
    return f"{head} (at {location})" if location else head


def explain(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> ExplainResult:
    """Trace `fn(*args, **kwargs)` with dynamo and report graphs, breaks and ops.

    Runs `fn` once. Resets dynamo before and after (torch's explain does), so every compiled cache entry in the
    process is dropped. `graph_break_count` is the larger of torch's count (graphs - 1 since 2.1) and the number of
    break reasons, so a break before the first op is not lost.
    """
    import torch._dynamo

    output = torch._dynamo.explain(fn)(*args, **kwargs)
    return _explain_result(output)


def _explain_result(output: Any) -> ExplainResult:
    raw_reasons = list(getattr(output, "break_reasons", None) or [])
    reasons = [_format_reason(getattr(r, "reason", str(r)), getattr(r, "user_stack", None)) for r in raw_reasons]
    graph_count = int(getattr(output, "graph_count", len(getattr(output, "graphs", []) or [])))
    torch_breaks = getattr(output, "graph_break_count", None)
    breaks = max(int(torch_breaks) if torch_breaks is not None else max(graph_count - 1, 0), len(reasons))
    return ExplainResult(graph_count=graph_count, graph_break_count=breaks, break_reasons=reasons,
                         op_count=int(getattr(output, "op_count", 0)))


# -- exceptions ----------------------------------------------------------------------------------------------------
_RECOMPILE_LIMIT_ERRORS = ("FailOnRecompileLimitHit", "FailOnCacheLimitHit")  # torch >= 2.7, torch 2.6


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_recompile_limit_error(exc: BaseException) -> bool:
    """Whether `exc` is dynamo refusing to compile because the recompile limit was hit.

    torch >= 2.6 raises `FailOnRecompileLimitHit` / `FailOnCacheLimitHit` (fullgraph=True or the fail switch);
    torch <= 2.5 raises `Unsupported("cache_size_limit reached")` under fullgraph=True.
    """
    for err in _chain(exc):
        if type(err).__name__ in _RECOMPILE_LIMIT_ERRORS:
            return True
        if _is_unsupported(err) and is_recompile_limit_reason(str(err)):
            return True
    return False


def _is_unsupported(exc: BaseException) -> bool:
    try:
        from torch._dynamo.exc import Unsupported
    except ImportError:  # pragma: no cover - every supported release has it
        return False
    return isinstance(exc, Unsupported)


def is_no_compiled_frames_error(exc: BaseException) -> bool:
    """torch >= 2.6 raises this under fullgraph=True when dynamo compiled no frame at all (e.g. dynamo disabled);
    older versions run such calls eagerly without a word (caught by the graph-run counter instead)."""
    return any("no compiled frames" in str(e) for e in _chain(exc))


def is_graph_break_error(exc: BaseException) -> bool:
    """Whether `exc` is dynamo's graph-break exception (`Unsupported`, raised under fullgraph=True)."""
    return any(_is_unsupported(err) for err in _chain(exc)) and not is_recompile_limit_error(exc)


def _user_location_from_message(message: str) -> str | None:
    """torch appends "from user code:\\n File "x.py", line N, in f" to dynamo errors; take the innermost frame."""
    _, marker, tail = message.partition("from user code:")
    if not marker:
        return None
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', tail)
    frames = [f for f in frames if f[0] not in _HELPERS] or frames
    if not frames:
        return None
    filename, lineno, name = frames[-1]
    return f"{_short_path(filename)}:{lineno} in {name}"


def describe_exception(exc: BaseException) -> str:
    """First line of dynamo's message plus the user-code location it points at (from `real_stack` or the text)."""
    target = next((err for err in _chain(exc) if _is_unsupported(err)), exc)
    message = str(getattr(target, "msg", None) or target)
    location = _location(getattr(target, "real_stack", None)) or _user_location_from_message(str(target))
    head = first_line(message) or type(target).__name__
    return f"{head} (at {location})" if location else head


# -- deployment exports (torch.export, ONNX, AOTInductor) ------------------------------------------------------------
# Checked against torch 2.13: `torch.export.export(..., dynamic_shapes=)` and `torch.export.Dim` exist from 2.2;
# `torch.onnx.export(..., dynamo=True)` from 2.5 (2.2 .. 2.4 have `torch.onnx.dynamo_export` instead, not used here);
# `torch._inductor.aoti_compile_and_package` / `aoti_load_package` from 2.6 (2.2 has neither), and the loaded
# model's `load_constants` from 2.6. A dimension marked dynamic whose example size is 1 is specialised by
# torch.export ("0/1 specialisation", measured on 2.13: "Constraints violated (batch)! ... specialized it to be a
# constant (1)"), so an example batch must be >= 2.


def batch_dim(name: str = "batch") -> Any:
    """A dynamic dimension for `torch.export`'s `dynamic_shapes` (`torch.export.Dim`, min 1)."""
    return torch.export.Dim(name, min=1, max=1 << 16)


def export_program(module: torch.nn.Module, args: tuple[Any, ...], dynamic_shapes: Any) -> Any:
    """`torch.export.export` (non-strict where the release has the switch: the mode the ONNX exporter uses too)."""
    import inspect

    strict = {"strict": False} if "strict" in inspect.signature(torch.export.export).parameters else {}
    return torch.export.export(module, args, dynamic_shapes=dynamic_shapes, **strict)


def is_export_specialisation_error(exc: BaseException) -> bool:
    """Whether an exporter refused a dimension marked dynamic because the code specialised it to its example value
    (torch.export's constraint violation, also when the ONNX exporter wraps it)."""
    for error in _chain(exc):
        if "Constraints violated" in str(error) or "specialized it to be a constant" in str(error):
            return True
    return False


def exporter_message(exc: BaseException) -> str:
    """What an exporter really said: the innermost error of the chain (the ONNX exporter wraps torch.export's in
    "Failed to export the model with torch.export"), its type and first line, terminal colour codes removed."""
    root = list(_chain(exc))[-1]
    text = re.sub(r"\x1b\[[0-9;]*m", "", first_line(str(root)))
    return f"{type(root).__name__}: {text}"


def onnx_dynamo_supported() -> bool:
    """Whether `torch.onnx.export` takes `dynamo=True` (torch >= 2.5)."""
    import inspect

    return "dynamo" in inspect.signature(torch.onnx.export).parameters


def onnx_export(module: torch.nn.Module, args: tuple[Any, ...], exporter: str, input_names: list[str],
                output_names: list[str], dynamic_shapes: Any, dynamic_axes: dict[str, dict[int, str]]) -> bytes:
    """The serialized ONNX model of `module` by `exporter` ("dynamo": torch.export based; "torchscript": the
    tracing exporter), with the dynamic batch dimension declared the exporter's way. No exporter-side constant
    folding (`optimize=False`, `do_constant_folding=False`): every initializer stays a state_dict entry, so one
    export can take another model's weights; onnxruntime folds constants itself when it loads the graph."""
    import io

    if exporter == "dynamo":
        if not onnx_dynamo_supported():
            raise RuntimeError(f"torch {torch.__version__} has no torch.onnx.export(dynamo=True) (torch >= 2.5)")
        program = torch.onnx.export(module, args, dynamo=True, verbose=False, input_names=input_names,
                                    output_names=output_names, dynamic_shapes=dynamic_shapes, optimize=False)
        return program.model_proto.SerializeToString()
    buffer = io.BytesIO()
    kwargs: dict[str, Any] = {"dynamo": False} if onnx_dynamo_supported() else {}
    torch.onnx.export(module, args, buffer, input_names=input_names, output_names=output_names,
                      dynamic_axes=dynamic_axes, do_constant_folding=False, **kwargs)
    return buffer.getvalue()


def aoti_supported() -> bool:
    """Whether this torch can build and load an AOTInductor package (torch >= 2.6)."""
    import torch._inductor

    return hasattr(torch._inductor, "aoti_compile_and_package") and hasattr(torch._inductor, "aoti_load_package")


def aoti_package(program: Any, path: str) -> Any:
    """Compile `program` (an ExportedProgram) into an AOTInductor package at `path` and load it."""
    import torch._inductor

    if not aoti_supported():
        raise RuntimeError(f"torch {torch.__version__} has no torch._inductor.aoti_compile_and_package (>= 2.6)")
    package = torch._inductor.aoti_compile_and_package(program, package_path=path)
    return torch._inductor.aoti_load_package(package)

