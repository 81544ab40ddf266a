"""The gate: a target, settings and the oracle, driven by Hypothesis until the budget runs out or a
divergence is found and shrunk. Used by `act-equiv check`, by the pytest suite and by the mutant run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from hypothesis import HealthCheck, assume, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky

from act_equiv import compat
from act_equiv.case import Case
from act_equiv.compiled import BACKENDS
from act_equiv.numerics import AUTOCAST_DTYPES, pinned_settings
from act_equiv.oracle import judge
from act_equiv.record import record
from act_equiv.runner import DTYPES, Runner, RunSettings
from act_equiv.targets import TargetError, resolve
from act_equiv.verdict import CaseVerdict, Divergence


class UsageError(ValueError):
    """A bad option: the CLI exits 2 with this message."""


@dataclass
class Gate:
    target: str = "concat"
    device: str = "cpu"
    dtype: str = "float32"
    backend: str | None = "aot_eager"
    mode: str | None = None
    dynamic: bool | None = None
    eager_rounding: bool = False
    autocast: str | None = None
    explain: bool = True
    runner: Runner = field(init=False)

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise UsageError(f"--device {self.device!r} is invalid: cpu or cuda")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available to this torch build")
        if self.dtype not in DTYPES:
            raise UsageError(f"--dtype {self.dtype!r} is invalid: one of {sorted(DTYPES)}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise UsageError(f"--backend {self.backend!r} is invalid: one of {list(BACKENDS)} or none")
        if self.mode is not None and self.backend != "inductor":
            raise UsageError(f"--mode {self.mode!r} needs --backend inductor (got {self.backend})")
        self._check_autocast()
        try:
            resolved = resolve(self.target)
        except TargetError as error:
            raise UsageError(str(error)) from error
        self.runner = Runner(resolved, RunSettings(self.device, self.dtype, self.backend, self.mode, self.dynamic,
                                                   autocast=self.autocast, explain=self.explain))

    def _check_autocast(self) -> None:
        if self.autocast is None:
            return
        if self.autocast not in AUTOCAST_DTYPES:
            raise UsageError(f"--autocast {self.autocast!r} is invalid: one of {list(AUTOCAST_DTYPES)} or none")
        if self.dtype != "float32":
            raise UsageError(f"--autocast {self.autocast} needs --dtype float32 (got {self.dtype}): autocast "
                             "lowers float32 ops only")
        if not compat.autocast_supported(self.device, AUTOCAST_DTYPES[self.autocast]):
            raise UsageError(f"--autocast {self.autocast} is not supported on --device {self.device} by torch "
                             f"{torch.__version__}; supported here: {autocast_dtypes(self.device) or 'none'}")

    def verdict(self, case: Case, compiled: bool = True) -> CaseVerdict:
        """Eager forms first; the compiled stage only when they agree (a divergence needs no compile)."""
        run = self.runner.run_eager(case)
        verdict = judge(run, eager_rounding=self.eager_rounding)
        if verdict.passed and compiled:
            self.runner.run_compiled(run)
            verdict = judge(run, eager_rounding=self.eager_rounding)
        run.live.clear()
        return verdict

    def assert_holds(self, case: Case) -> CaseVerdict:
        """The property: every form agrees on this case. Raises `Divergence` (Hypothesis shrinks on it)."""
        verdict = record(self.verdict(case))
        if not verdict.passed:
            raise Divergence(verdict)
        return verdict

    def environment(self) -> dict[str, Any]:
        return environment(self.target, self.device, self.dtype, self.backend, self.mode, self.dynamic,
                           self.eager_rounding, self.autocast)


def autocast_dtypes(device: str) -> list[str]:
    """The `--autocast` values this torch really applies on `device`."""
    return [name for name, dtype in AUTOCAST_DTYPES.items() if compat.autocast_supported(device, dtype)]


def environment(target: str, device: str, dtype: str, backend: str | None, mode: str | None,
                dynamic: bool | None, eager_rounding: bool, autocast: str | None = None) -> dict[str, Any]:
    """What a report states about the run: versions, machine and the gate's settings."""
    import platform

    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "target": target,
        "backend": backend,
        "mode": mode,
        "dtype": dtype,
        "autocast": autocast,
        "dynamic": dynamic,
        "eager_tolerance": "rounding" if eager_rounding else "bitwise",
        **pinned_settings(device),
    }


@dataclass
class SearchResult:
    verdicts: list[CaseVerdict]
    failure: CaseVerdict | None
    """The shrunk counterexample, if any."""
    seconds: float
    stopped_by: str  # "examples" | "time budget" | "failure"


def search(
    gate: Gate,
    strategy: st.SearchStrategy[Case],
    max_examples: int,
    time_budget: float | None = None,
    seed_value: int | None = None,
    profile: str | None = None,
    on_verdict: Callable[[CaseVerdict, int], None] | None = None,
    compiled: bool = True,
) -> SearchResult:
    """Run the property on drawn cases; on a divergence, let Hypothesis shrink it and keep the smallest.

    `compiled=False` runs the eager stage only: an eager sweep costs milliseconds per case where a compile
    costs seconds, so a diverging edit is found and shrunk before anything is compiled.
    """
    verdicts: list[CaseVerdict] = []
    failures: list[CaseVerdict] = []
    start = time.perf_counter()
    stopped_by = "examples"

    @settings(settings.get_profile(profile) if profile else settings(), max_examples=max_examples, deadline=None,
              database=None, print_blob=False, report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(case: Case) -> None:
        nonlocal stopped_by
        if time_budget is not None and time.perf_counter() - start > time_budget and not failures:
            stopped_by = "time budget"
            assume(False)  # cheap rejections until Hypothesis stops; shrinking is never cut short
        # Once an eager-stage failure is found, shrinking only needs the eager stage to reproduce it.
        verdict = gate.verdict(case, compiled=compiled and (not failures or "compile" in failures[0].info))
        verdicts.append(verdict)
        if on_verdict is not None:
            on_verdict(verdict, len(verdicts))
        if not verdict.passed:
            failures.append(verdict)
            raise Divergence(verdict)

    if seed_value is not None:
        prop = seed(seed_value)(prop)
    try:
        prop()
    except Divergence as error:
        # Hypothesis re-runs the shrunk example last, so the error it raises carries the smallest case.
        return SearchResult(verdicts, error.verdict, time.perf_counter() - start, "failure")
    except Flaky:
        return SearchResult(verdicts, failures[-1], time.perf_counter() - start, "failure")
    return SearchResult(verdicts, None, time.perf_counter() - start, stopped_by)

