"""The stages of a check, each a search driven by Hypothesis over one `Gate`: the covering array (every row of a
strength-3 covering array over the features that interact, eager: no stream of random draws can miss a 3-way
interaction), the eager sweep (random cases, eager) and the compiled search, run in that order by `check` while
nothing fails. A failure is shrunk within a time budget (`act_equiv.shrink`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, assume, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky, Unsatisfiable

from act_equiv import forms, profiles
from act_equiv.case import Case
from act_equiv.gate import Gate
from act_equiv.oracle.verdict import CaseVerdict, Divergence
from act_equiv.settings import SHRINK_BUDGET, Search
from act_equiv.shrink import shrink

__all__ = ["COVERING_EXAMPLES", "EAGER_SWEEP_FACTOR", "UNCOMPARED_FACTOR", "SearchResult", "check", "search",
           "sweep_covering"]


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
    base = profiles.settings_for(profile)
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


def _modes(requested: tuple[str, ...]) -> dict[str, bool]:
    """The compiled search's mode pin: eval only where no requested form runs in training (the deployment forms):
    a training case would compare none of them (the eager stages already judged eager training)."""
    return {} if any(forms.FORMS[form].runs_in(True) for form in requested) else {"training": False}


def check(
    gate: Gate,
    scope: dict[str, Any],
    how: Search,
    announce: Callable[[str], None] = lambda line: None,
    on_verdict: Callable[[CaseVerdict, int], None] | None = None,
) -> list[SearchResult]:
    """A whole check: the covering array, the eager sweep, the compiled search, each only while nothing failed,
    searched as `how` says. Returns each stage's result; the last one holds the failure, if any. `scope` holds
    `strategies.cases` keywords; `announce` hears one line as each stage starts; `on_verdict` sees each verdict (its
    `info["stage"]` says which) with its number within the stage."""
    from act_equiv import strategies as aes

    rows = aes.covering_rows()
    announce(f"covering array: {len(rows)} rows x {COVERING_EXAMPLES} cases, every 3-way combination of the "
             f"interacting features, target eager vs reference {gate.settings.reference}")
    stages = [sweep_covering(gate, rows, lambda row: aes.covering_cases(row, **scope), COVERING_EXAMPLES,
                             how.seed, how.profile, how.shrink_budget, on_verdict)]
    eager_examples = EAGER_SWEEP_FACTOR * how.max_examples
    if stages[-1].failure is None:
        announce(f"eager sweep: {eager_examples} compared random cases, target eager vs reference "
                 f"{gate.settings.reference} (no compile)")
        stages.append(search(gate, aes.cases(**scope), eager_examples, how.time_budget, how.seed, how.profile,
                             on_verdict, compiled=False, stage="eager", shrink_budget=how.shrink_budget))
    if stages[-1].failure is None and gate.settings.forms:
        deployed = "".join(f", {form}" for form in gate.settings.deployed_forms)
        announce(f"compiled search: {how.max_examples} compared cases, backend {gate.settings.backend}{deployed}")
        spent = sum(stage.seconds for stage in stages[1:])
        budget_left = None if how.time_budget is None else max(0.0, how.time_budget - spent)
        stages.append(search(gate, aes.cases(**_modes(gate.settings.forms), **scope), how.max_examples, budget_left,
                             how.seed, how.profile, on_verdict=on_verdict, shrink_budget=how.shrink_budget,
                             requested=gate.settings.forms))
    return stages
