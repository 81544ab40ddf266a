"""The gate: a target, settings and the oracle, driven by Hypothesis until the budget runs out or a
divergence is found and shrunk. Used by `act-equiv check`, by the pytest suite and by the mutant run.

A check runs three stages: the covering array (every row of a strength-3 covering array over the features that
interact, eager: no stream of random draws can miss a 3-way interaction), the eager sweep (random cases, eager)
and the compiled search. A failure is shrunk within a time budget (`act_equiv.shrink`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from hypothesis import HealthCheck, Phase, assume, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky, Unsatisfiable

from act_equiv import compat, forms, profiles
from act_equiv.baseline import Baseline
from act_equiv.case import Case
from act_equiv.errors import UsageError
from act_equiv.oracle.judge import judge
from act_equiv.oracle.tolerance import tolerance_for
from act_equiv.oracle.verdict import CaseVerdict, Divergence
from act_equiv.run.compiled import BACKENDS
from act_equiv.run.concurrent import at_once
from act_equiv.run.deployed import ONNX_EXPORTERS
from act_equiv.run.environment import gate_environment
from act_equiv.run.numerics import AUTOCAST_DTYPES
from act_equiv.run.records import DTYPES, RunSettings
from act_equiv.run.runner import Runner
from act_equiv.run.side import Side
from act_equiv.run.worker import WORKER_TIMEOUT, WorkerSide
from act_equiv.shrink import shrink
from act_equiv.targets import resolve
from act_equiv.targets.revision import is_revision, materialize

INDUCTOR_CACHE = "TORCHINDUCTOR_CACHE_DIR"
SHRINK_BUDGET = 60.0
"""Seconds a found failure may spend shrinking before the smallest case so far is reported."""


@dataclass
class Gate:
    """Two sides and the settings they run under. `reference`/`target` are specs (`act_equiv.targets.resolve`, or
    `lerobot@REV` of the repository `lerobot_repo`); `*_python` runs that side on another interpreter. `strict`
    fails the warning classes (rounding, raised-both) too. Call `close()` to end worker processes."""

    target: str = "concat"
    device: str = "cpu"
    dtype: str = "float32"
    backend: str | None = "aot_eager"
    mode: str | None = None
    dynamic: bool | None = None
    autocast: str | None = None
    explain: bool = True
    reference: str = "legacy"
    reference_python: str | None = None
    target_python: str | None = None
    lerobot_repo: str | None = None
    worker_timeout: float = WORKER_TIMEOUT
    strict: bool = False
    forms: tuple[str, ...] | str = ("compiled",)
    """The target's forms beside its eager one (`act_equiv.forms.FORMS`: "compiled" and the deployment forms); a
    comma-separated string is accepted too. Without "compiled", no torch.compile form runs (backend none). They run
    where the target runs, a worker included."""
    onnx_exporter: str = "dynamo"
    train_steps: int | None = None
    """Optimizer steps of each training case's trajectory (`act_equiv.run.training`); None: the loaded Hypothesis
    profile's (`act_equiv.profiles.train_steps`); 0 trains none."""
    trained_structures: int = 1
    """Structures per run whose training is compiled too (`RunSettings.trained_structures`)."""
    baseline: str | None = None
    """A known-findings file (`act_equiv.baseline`): the failures it lists are known, not failures."""
    record_findings: bool = False
    """Accept every failure (as known), so that a run goes on and its findings can be written as a baseline."""
    runner: Runner = field(init=False)
    known: Baseline | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.baseline is not None:
            self.known = Baseline.load(self.baseline)
        if self.device not in ("cpu", "cuda"):
            raise UsageError(f"device={self.device!r} is invalid: cpu or cuda", "device")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise UsageError("device='cuda': no CUDA device is available to this torch build", "device")
        if self.dtype not in DTYPES:
            raise UsageError(f"dtype={self.dtype!r} is invalid: one of {sorted(DTYPES)}", "dtype")
        if self.backend is not None and self.backend not in BACKENDS:
            raise UsageError(f"backend={self.backend!r} is invalid: one of {list(BACKENDS)} or none", "backend")
        if self.mode is not None and self.backend != "inductor":
            raise UsageError(f"mode={self.mode!r} needs backend='inductor' (got {self.backend!r})", "mode", "backend")
        self._check_autocast()
        self._check_forms()
        if self.train_steps is None:
            self.train_steps = profiles.train_steps()
        for name in ("train_steps", "trained_structures"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UsageError(f"{name}={value!r} is invalid: an int >= 0", name)
        settings = RunSettings(self.device, self.dtype, self.backend, self.mode, self.dynamic, autocast=self.autocast,
                               explain=self.explain, reference64=self._needs_reference64(),
                               forms=self.deployed_forms, onnx_exporter=self.onnx_exporter,
                               train_steps=self.train_steps, trained_structures=self.trained_structures)
        if not self.worker_timeout > 0:
            raise UsageError(f"worker_timeout={self.worker_timeout!r} is invalid: seconds > 0", "worker_timeout")
        # Both sides open at once where one runs in a worker (each worker imports its side: seconds).
        opened = at_once([(lambda spec=spec, python=python, role=role: open_side(
            spec, settings, python, self.lerobot_repo, role, self.worker_timeout), in_worker(spec, python))
            for spec, python, role in ((self.reference, self.reference_python, "reference"),
                                       (self.target, self.target_python, "target"))])
        for outcome in opened:
            if outcome.error is not None:
                for other in opened:
                    if other.error is None:
                        other.value.close()
                raise outcome.error
        self.runner = Runner(opened[0].value, opened[1].value, settings)
        try:
            self._check_target_forms()
        except BaseException:
            self.runner.close()
            raise

    def close(self) -> None:
        """End the sides' worker processes (a gate without workers has nothing to end)."""
        self.runner.close()

    @property
    def deployed_forms(self) -> tuple[str, ...]:
        return tuple(form for form in self.forms if forms.FORMS[form].deployment)

    @property
    def requested_forms(self) -> tuple[str, ...]:
        """The target's forms this gate compares beyond eager: compiled (with a backend) and the deployment forms."""
        return (*((forms.COMPILED,) if self.backend is not None else ()), *self.deployed_forms)

    def _check_forms(self) -> None:
        """Forms by name (a comma-separated string too), each in a dtype and autocast it runs in (the table's); the
        onnx exporter by name. What each form needs installed is checked where the target runs, once it is open."""
        try:
            self.forms = forms.parse_forms(self.forms)
        except ValueError as error:
            raise UsageError(str(error), "forms") from None
        if self.onnx_exporter not in ONNX_EXPORTERS:
            raise UsageError(f"onnx_exporter={self.onnx_exporter!r} is invalid: one of {list(ONNX_EXPORTERS)}",
                             "onnx_exporter")
        no_autocast = [form for form in self.forms if not forms.FORMS[form].autocast]
        if no_autocast and self.autocast is not None:
            raise UsageError(f"forms={','.join(no_autocast)!r} run without autocast (got autocast={self.autocast!r}): "
                             "deployment exports are float32", "forms", "autocast")
        for form in self.forms:
            if self.dtype not in forms.FORMS[form].dtypes:
                raise UsageError(f"forms={form!r} runs {' or '.join(forms.FORMS[form].dtypes)} only (got "
                                 f"dtype={self.dtype!r})", "forms", "dtype")
        if "onnx" in self.forms and self.onnx_exporter == "dynamo" and not compat.onnx_dynamo_supported():
            raise UsageError(f"onnx_exporter='dynamo' needs torch >= 2.5 (this is {torch.__version__}); use "
                             "'torchscript'", "onnx_exporter")
        if "compiled" not in self.forms:
            self.backend, self.mode = None, None

    def forms_line(self) -> str:
        """Which forms run on which side, and where: `forms: reference eager (worker); target eager, compiled
        (aot_eager), exported (worker)`."""
        target = ["eager", *(f"compiled ({self.backend}" + (f" {self.mode})" if self.mode else ")")
                             if form == forms.COMPILED and self.backend is not None else form
                             for form in self.forms if form != forms.COMPILED or self.backend is not None)]

        def where(side: Any) -> str:
            return "in process" if side.environment()["process"] == "in-process" else "worker"

        return (f"forms: reference eager ({where(self.runner.reference)}); target {', '.join(target)} "
                f"({where(self.runner.target)})")

    def _check_target_forms(self) -> None:
        """Every form asked for can run where the target runs (its worker's interpreter answers for itself): else a
        usage error naming what to install there, before any case runs."""
        missing = self.runner.target.missing_forms()
        if missing:
            form, reason = next(iter(missing.items()))
            where = f" (the target runs on {self.target_python}: install it there)" if self.target_python else ""
            raise UsageError(f"forms={form!r}: {reason}{where}", "forms", "target_python")

    def _needs_reference64(self) -> bool:
        """Whether any compiled tolerance of these settings may fall back to the fp64-referenced check."""
        dtype = DTYPES[self.dtype]
        if any(forms.FORMS[form].float64_evidence and tolerance_for(forms.FORMS[form].tolerance, dtype).rmse_factor
               is not None for form in self.deployed_forms):
            return True
        if self.backend is None:
            return False
        return any(tolerance_for("compiled", dtype, self.backend, autocast=self.autocast, training=training,
                                 gradient=gradient).rmse_factor is not None
                   for training in (False, True) for gradient in (False, True))

    def _check_autocast(self) -> None:
        if self.autocast is None:
            return
        if self.autocast not in AUTOCAST_DTYPES:
            raise UsageError(f"autocast={self.autocast!r} is invalid: one of {list(AUTOCAST_DTYPES)} or none",
                             "autocast")
        if self.dtype != "float32":
            raise UsageError(f"autocast={self.autocast!r} needs dtype='float32' (got {self.dtype!r}): autocast "
                             "lowers float32 ops only", "autocast", "dtype")
        if not compat.autocast_supported(self.device, AUTOCAST_DTYPES[self.autocast]):
            raise UsageError(f"autocast={self.autocast!r} is not supported on device={self.device!r} by torch "
                             f"{torch.__version__}; supported here: {autocast_dtypes(self.device) or 'none'}",
                             "autocast", "device")

    def verdict(self, case: Case, compiled: bool = True) -> CaseVerdict:
        """Eager forms first; the compiled stage only when they agree (a divergence needs no compile)."""
        run = self.runner.run_eager(case)
        verdict = self._accept(judge(run, strict=self.strict))
        if verdict.passed and compiled:
            self.runner.run_compiled(run)
            verdict = self._accept(judge(run, strict=self.strict))
        return verdict

    def _accept(self, verdict: CaseVerdict) -> CaseVerdict:
        """The verdict with the failures the baseline knows accepted (every failure, when recording findings)."""
        if self.record_findings:
            verdict.accepted = frozenset(signature for signature, _ in verdict.failure_lines())
        elif self.known is not None:
            verdict.accepted = self.known.signatures
        return verdict

    def environment(self) -> dict[str, Any]:
        """What a report states about this gate's run (`act_equiv.run.environment`)."""
        return gate_environment(self.target, self.device, self.dtype, self.backend, self.mode, self.dynamic,
                                self.autocast, reference=self.reference, strict=self.strict,
                                reference_python=self.reference_python, target_python=self.target_python,
                                lerobot_repo=self.lerobot_repo, worker_timeout=self.worker_timeout,
                                forms=",".join(self.forms), onnx_exporter=self.onnx_exporter,
                                train_steps=self.train_steps, trained_structures=self.trained_structures,
                                baseline=self.baseline,
                                sides={"reference": self.runner.reference.environment(),
                                       "target": self.runner.target.environment()})


def in_worker(spec: str, python: str | None) -> bool:
    """Whether `open_side` runs this side in a worker process."""
    return is_revision(spec) or python is not None


def open_side(spec: str, settings: RunSettings, python: str | None = None, lerobot_repo: str | None = None,
              setting: str = "target", timeout: float = WORKER_TIMEOUT) -> Any:
    """The side for `spec`: in this process (`Side`) unless it must run in a worker (`WorkerSide`): a LeRobot git
    revision (`lerobot@REV`, materialised by `act_equiv.targets.revision`), or any spec on another `python`.
    `setting` names the option the spec came from ("reference" or "target"), for error messages; `timeout` is a
    worker's per-request limit."""
    if not in_worker(spec, python):
        return Side(resolve(spec), settings)
    worker = {"python": python, "setting": setting, "timeout": timeout}
    if not is_revision(spec):
        return WorkerSide(spec, settings, **worker)
    try:
        revision = materialize(spec, lerobot_repo)
    except UsageError as error:
        raise UsageError(str(error), setting, *error.settings) from None
    about = {"revision": revision.describe(), "commit": revision.commit, "content": revision.content,
             "layout": revision.layout}
    # A revision's compiled graphs are cached beside its extracted package, so the next run of the same commit (or
    # the same WORKTREE content) reuses inductor's work; a TORCHINDUCTOR_CACHE_DIR set by the user wins.
    inductor = {INDUCTOR_CACHE: os.environ.get(INDUCTOR_CACHE,
                                               str(revision.root.with_name(revision.root.name + ".inductor")))}
    return WorkerSide("lerobot", settings, paths=(str(revision.root),), label=spec, **worker, env=inductor,
                      open_keywords={"policies": revision.policies_package,
                                     "about": {**about, "inductor_cache": inductor[INDUCTOR_CACHE]}})


def autocast_dtypes(device: str) -> list[str]:
    """The `--autocast` values this torch really applies on `device`."""
    return [name for name, dtype in AUTOCAST_DTYPES.items() if compat.autocast_supported(device, dtype)]


@dataclass
class SearchResult:
    verdicts: list[CaseVerdict]
    failure: CaseVerdict | None
    """The shrunk counterexample, if any."""
    seconds: float
    stopped_by: str  # "examples" | "time budget" | "failure" | "covering array"
    shrink: dict[str, Any] | None = None
    """How shrinking went: Hypothesis's pass and the greedy one (`act_equiv.shrink`), and whether the budget cut it."""


def search(
    gate: Gate,
    strategy: st.SearchStrategy[Case],
    max_examples: int,
    time_budget: float | None = None,
    seed_value: int | None = None,
    profile: str | None = None,
    on_verdict: Callable[[CaseVerdict, int], None] | None = None,
    compiled: bool = True,
    stage: str = "compiled",
    shrink_budget: float = SHRINK_BUDGET,
    row: int | None = None,
    requested: tuple[str, ...] = (),
) -> SearchResult:
    """Run the property on drawn cases; on a divergence, shrink it within `shrink_budget` seconds.

    `compiled=False` runs the eager stage only: an eager sweep costs milliseconds per case where a compile
    costs seconds, so a diverging edit is found and shrunk before anything is compiled. Eager failures are shrunk
    by Hypothesis, then greedily (`act_equiv.shrink`); compiled ones by the greedy pass alone, whose candidates
    are ordered by compile cost. `stage` labels the verdicts for the report, `row` the covering-array row they were
    drawn in. The time budget stops the search only once each of `requested` (the target's forms the run asks for)
    compared a case in every mode it runs in (then only cases of a mode still missing are run): a budget never
    silently drops a form, nor compiled training.
    """
    verdicts: list[CaseVerdict] = []
    failing: dict[str, CaseVerdict] = {}
    start = time.perf_counter()
    found_at: float | None = None
    stopped_by = "examples"
    cut = False
    uncompared = 0
    missing = {(form, training) for form in requested for training in (False, True)
               if forms.FORMS[form].runs_in(training)}
    base = settings.get_profile(profile) if profile else settings()
    phases = [p for p in base.phases if compiled is False or p is not Phase.shrink]

    def judged(case: Case, with_compiled: bool) -> CaseVerdict:
        verdict = gate.verdict(case, compiled=with_compiled)
        verdict.info["stage"] = stage
        if row is not None:
            verdict.info["row"] = row
        return verdict

    @settings(base, max_examples=max_examples, deadline=None, database=None, print_blob=False,
              report_multiple_bugs=False, suppress_health_check=list(HealthCheck), phases=phases)
    @given(strategy)
    def prop(case: Case) -> None:
        nonlocal stopped_by, found_at, cut, uncompared
        known = failing.get(case.to_json())
        if known is not None:
            raise Divergence(known)
        if found_at is not None and time.perf_counter() - found_at > shrink_budget:
            cut = True
            return  # over the shrink budget: an unseen candidate counts as passing, so Hypothesis stops soon
        over_budget = found_at is None and time_budget is not None and time.perf_counter() - start > time_budget
        if over_budget and not any(training == case.training for _, training in missing):
            stopped_by = "time budget"
            assume(False)  # cheap rejections until Hypothesis stops
        if found_at is None and uncompared > UNCOMPARED_FACTOR * max_examples:
            stopped_by = "too few cases compared"
            assume(False)
        verdict = judged(case, compiled and (found_at is None or _compiled_failure(failing)))
        verdicts.append(verdict)
        if on_verdict is not None:
            on_verdict(verdict, len(verdicts))
        missing.difference_update((form, case.training) for form in verdict.compared_forms)
        if not verdict.passed:
            found_at = found_at or time.perf_counter()
            failing[case.to_json()] = verdict
            raise Divergence(verdict)
        if stage != "covering" and found_at is None and not (verdict.compared_forms if compiled else verdict.compared):
            uncompared += 1
            assume(False)  # it compared nothing (both sides raised, or skipped): not one of the stage's cases

    if seed_value is not None:
        prop = seed(seed_value)(prop)
    try:
        prop()
    except (Divergence, Flaky) as error:
        # Hypothesis re-runs the shrunk example last, so the error it raises carries the smallest case.
        failure = error.verdict if isinstance(error, Divergence) else list(failing.values())[-1]
    except Unsatisfiable:  # no case compared anything: the time budget ran out first, or every case raised alike
        return SearchResult(verdicts, None, time.perf_counter() - start,
                            "time budget" if stopped_by == "time budget" else "nothing compared")
    else:
        return SearchResult(verdicts, None, time.perf_counter() - start, stopped_by)
    hypothesis_seconds = time.perf_counter() - (found_at or start)
    with_compiled = compiled and _compiled_failure(failing)
    greedy = shrink(lambda case: judged(case, with_compiled), failure, max(0.0, shrink_budget - hypothesis_seconds))
    return SearchResult(verdicts, greedy.verdict, time.perf_counter() - start, "failure", {
        "budget": shrink_budget, "hypothesis_seconds": round(hypothesis_seconds, 1),
        "hypothesis_cut_at_budget": cut, "greedy": greedy.to_dict(),
        "stopped_at_budget": cut or greedy.stopped_at_budget, "first": failing[next(iter(failing))].case.describe()})


def _compiled_failure(failing: dict[str, CaseVerdict]) -> bool:
    """Whether the first failure needed the compiled stage (then its shrinking needs it too): a compiled form or a
    deployment form ran."""
    info = next(iter(failing.values())).info
    return "compile" in info or "deployed" in info


def sweep_covering(
    gate: Gate,
    rows: list[dict[str, Any]],
    strategy_for: Callable[[dict[str, Any]], st.SearchStrategy[Case]],
    examples_per_row: int = 2,
    seed_value: int | None = None,
    profile: str | None = None,
    shrink_budget: float = SHRINK_BUDGET,
    on_verdict: Callable[[CaseVerdict, int], None] | None = None,
) -> SearchResult:
    """Every covering-array row, eager: Hypothesis draws `examples_per_row` cases within the row's pinned features
    (its first draw is the row's simplest case), and a failure is shrunk. Runs whatever the time budget."""
    start = time.perf_counter()
    verdicts: list[CaseVerdict] = []
    for index, row in enumerate(rows):
        result = search(gate, strategy_for(row), examples_per_row, seed_value=seed_value, profile=profile,
                        compiled=False, stage="covering", shrink_budget=shrink_budget, on_verdict=on_verdict,
                        row=index)
        verdicts += result.verdicts
        if result.failure is not None:
            return dataclasses.replace(result, verdicts=verdicts, seconds=time.perf_counter() - start)
    return SearchResult(verdicts, None, time.perf_counter() - start, "covering array")


UNCOMPARED_FACTOR = 3
"""A random stage stops drawing once this many times its cases compared nothing (both sides raised alike, or a side
could not run them): the run then reports how few it compared rather than drawing on."""
EAGER_SWEEP_FACTOR = 5
"""The eager sweep draws this many times the compiled search's cases (eager cases cost milliseconds)."""
COVERING_EXAMPLES = 2
"""Cases per covering-array row: Hypothesis's first draw is the row's simplest case, the second a random one."""


def check(
    gate: Gate,
    scope: dict[str, Any],
    max_examples: int,
    time_budget: float | None = None,
    seed_value: int | None = None,
    profile: str | None = None,
    shrink_budget: float = SHRINK_BUDGET,
    announce: Callable[[str], None] = lambda line: None,
    on_verdict: Callable[[CaseVerdict, int], None] | None = None,
) -> list[SearchResult]:
    """A whole check: the covering array, the eager sweep, the compiled search, each only while nothing failed.
    Returns each stage's result; the last one holds the failure, if any. `scope` holds `strategies.cases` keywords;
    `announce` hears one line as each stage starts; `on_verdict` sees each verdict (its `info["stage"]` says which)
    with its number within the stage."""
    from act_equiv import strategies as aes

    rows = aes.covering_rows()
    announce(f"covering array: {len(rows)} rows x {COVERING_EXAMPLES} cases, every 3-way combination of the "
             f"interacting features, target eager vs reference {gate.reference}")
    stages = [sweep_covering(gate, rows, lambda row: aes.covering_cases(row, **scope), COVERING_EXAMPLES,
                             seed_value, profile, shrink_budget, on_verdict)]
    eager_examples = EAGER_SWEEP_FACTOR * max_examples
    if stages[-1].failure is None:
        announce(f"eager sweep: {eager_examples} compared random cases, target eager vs reference {gate.reference} "
                 "(no compile)")
        stages.append(search(gate, aes.cases(**scope), eager_examples, time_budget, seed_value, profile,
                             on_verdict, compiled=False, stage="eager", shrink_budget=shrink_budget))
    if stages[-1].failure is None and (gate.backend is not None or gate.deployed_forms):
        deployed = "".join(f", {form}" for form in gate.deployed_forms)
        announce(f"compiled search: {max_examples} compared cases, backend {gate.backend}{deployed}")
        spent = sum(stage.seconds for stage in stages[1:])
        budget_left = None if time_budget is None else max(0.0, time_budget - spent)
        stages.append(search(gate, aes.cases(**scope), max_examples, budget_left, seed_value, profile,
                             on_verdict=on_verdict, shrink_budget=shrink_budget, requested=gate.requested_forms))
    return stages
