"""The oracle: turns what the runner recorded into a verdict. Strict where the math is identical.

Pairs judged:
- legacy/target: the target eager against the frozen reference, bitwise by default;
- target/target_repeat: eager run twice under the same seed must be bitwise equal, or nothing else can be
  trusted (PyTorch's accuracy checker's "eager_two_runs_differ");
- target/compiled: the compiled target against its eager self, per the tolerance table (outputs and gradients
  each their own), with the fp64-referenced check where a compiler may reorder floating point; in eval also
  at every further batch size the compiled graph was called with (the dynamic-shape graph);
- target/<deployment form> (eval): the actions of each deployment form (exported, onnx, aoti) against the eager
  target at every size it ran, per the tolerance table; one export must serve them all (`export_specialised`),
  and an exporter or runtime that raises is a finding (`export_raised`);
- the reference must be finite: a NaN or inf in the legacy outputs leaves nothing to compare against.
The fp64 reference is the target's own float64 run, or the legacy model's where the target cannot run in
float64 (LeRobot's zero latent is hard-coded float32) and the target agrees with legacy bitwise: then both
compute the same float32 numbers and the legacy float64 run is exact for both. The verdict says which served.
Under autocast, the reference must really have run in mixed precision (else the run tests full precision).
Compile hygiene: compiled code must have run (no silent eager fallback), no graph break, and recompiles
within the allowance for the dynamic-shape setting when only the batch size changes.
"""

from __future__ import annotations

import dataclasses

from act_equiv.oracle.compare import compare, non_finite
from act_equiv.oracle.tolerance import DEPLOYED_KINDS, EXACT, Tolerance, tolerance_for
from act_equiv.oracle.verdict import CaseVerdict, Finding, TensorCheck
from act_equiv.run.numerics import AUTOCAST_DTYPES
from act_equiv.run.records import CaseRun, ErrorRecord, batch_suffix


def recompile_allowance(dynamic: bool | None, batch_sizes: list[int]) -> int:
    """Recompiles that are expected when only the batch size changes.

    dynamic=False: one graph per size. dynamic=None (automatic): one, when dynamo turns the batch dimension
    dynamic at the second size. dynamic=True: none, except that size 1 is always specialised.
    """
    extra = len(set(batch_sizes)) - 1
    if extra <= 0:
        return 0
    if dynamic is False:
        return extra
    if dynamic is None:
        return 1
    return 1 if 1 in batch_sizes else 0


def judge(run: CaseRun, eager_rounding: bool = False) -> CaseVerdict:
    verdict = CaseVerdict(run.case, info={"seconds": round(run.seconds, 3), "settings": run.settings.label(),
                                          "features": run.features})
    if run.skipped is not None:
        verdict.info["skipped"] = run.skipped
        return verdict
    settings = run.settings
    forms = run.forms
    for error in run.errors:
        finding = _error_finding(error, run)
        if finding is None:
            verdict.info.setdefault("not_judged", []).append(f"{error.stage}: {error.type}: {error.message}")
        else:
            verdict.findings.append(finding)
    if settings.autocast is not None:
        _judge_autocast(run, verdict)
    broken = non_finite(forms["legacy"])
    if broken:
        verdict.findings.append(Finding(
            "reference_not_finite", f"the legacy reference is not finite on {run.case.describe()} "
            f"({', '.join(f'{name}: {info}' for name, info in sorted(broken.items()))}): nothing can be compared "
            "with it", {"tensors": broken}))
    if "target" in forms:
        legacy = compare(forms["legacy"], forms["target"], "legacy/target",
                         tolerance_for("eager", settings.torch_dtype, eager_rounding=eager_rounding,
                                       autocast=settings.autocast))
        verdict.checks += legacy
    if "target_repeat" in forms:
        repeat = compare(forms["target"], forms["target_repeat"], "target/target_repeat", EXACT)
        if not all(check.passed for check in repeat):
            verdict.findings.append(Finding("eager_nondeterministic", "the target's eager forward gave different "
                                            "results on two runs with the same seed; no comparison can be trusted"))
        verdict.checks += repeat
    if "compiled" in forms:
        verdict.checks += _judge_compiled(run, verdict)
    if run.deployed_sizes:
        verdict.checks += _judge_deployed(run, verdict)
    if run.compile_stats is not None:
        _judge_compile(run, verdict)
    if run.explain:
        verdict.info["explain"] = run.explain
    return verdict


def _judge_compiled(run: CaseRun, verdict: CaseVerdict) -> list[TensorCheck]:
    """Compiled vs eager target at the case's batch size and at each further one the graph was called with."""
    s, forms = run.settings, run.forms

    def tolerance(tensor: str) -> Tolerance:
        return tolerance_for("compiled", s.torch_dtype, s.backend, autocast=s.autocast,
                             training=run.case.training, gradient=tensor.startswith("grad/"))

    checks = []
    for size in run.batch_sizes or [run.case.batch.batch_size]:
        suffix = batch_suffix(run.case, size)
        pair = f"target/compiled{suffix}"
        checks += compare(forms[f"target{suffix}"], forms[f"compiled{suffix}"], pair, tolerance,
                          _reference64(run, verdict, suffix))
    return checks


def _judge_deployed(run: CaseRun, verdict: CaseVerdict) -> list[TensorCheck]:
    """Each deployment form's actions vs the eager target's at every size it ran (the runner stops a form at its
    first error, which is a finding of its own)."""
    s, forms = run.settings, run.forms
    verdict.info["deployed"] = {**run.deployed, "batch_sizes": run.deployed_sizes}
    checks = []
    for form in s.forms:
        tolerance = tolerance_for(form, s.torch_dtype)
        for size in run.deployed_sizes:
            suffix = batch_suffix(run.case, size)
            if f"{form}{suffix}" not in forms:
                break
            checks += compare({"actions": forms[f"target{suffix}"]["actions"]}, forms[f"{form}{suffix}"],
                              f"target/{form}{suffix}", tolerance, _reference64(run, verdict, suffix))
    return checks


def _reference64(run: CaseRun, verdict: CaseVerdict, suffix: str) -> dict | None:
    """The float64 reference the fp64-referenced check may use, and which form served (recorded in the verdict)."""
    forms = run.forms
    if f"reference64{suffix}" in forms:
        verdict.info["reference64"] = "target float64"
        return forms[f"reference64{suffix}"]
    if f"legacy64{suffix}" in forms:
        legacy_bitwise = all(c.passed and c.max_abs == 0 for c in verdict.checks if c.pair == "legacy/target")
        if legacy_bitwise:
            verdict.info["reference64"] = "legacy float64 (the target cannot run in float64)"
            return forms[f"legacy64{suffix}"]
        verdict.info["reference64"] = ("none: the target cannot run in float64 and differs from the legacy reference "
                                       "in float32, so no float64 run is exact for it (element-wise tolerance only)")
    return None


def _judge_autocast(run: CaseRun, verdict: CaseVerdict) -> None:
    """An autocast run must have run in mixed precision: the legacy action head (a Linear, autocast-eligible)
    then returns the autocast dtype. Otherwise autocast was silently off and the run tested full precision."""
    actions = run.forms.get("legacy", {}).get("actions")
    if actions is not None and actions.dtype != AUTOCAST_DTYPES[run.settings.autocast]:
        verdict.findings.append(Finding(
            "autocast_ran", f"autocast {run.settings.autocast} was asked for, but the legacy reference's actions "
            f"are {actions.dtype}: autocast did not take effect on {run.settings.device}"))


def _error_finding(error: ErrorRecord, run: CaseRun) -> Finding | None:
    detail = {"stage": error.stage, "type": error.type, "traceback": error.traceback}
    if error.stage.startswith("explain:"):
        return None
    if error.stage == "load_state_dict" and run.layout is not None:
        layout = run.layout
        return Finding("layout", "checkpoint layout changed: the reference state_dict does not load strict=True "
                       f"(missing {layout['missing'][:5]}, unexpected {layout['unexpected'][:5]})",
                       {**detail, **layout})
    if error.kind == "not_compiled":
        return Finding("compiled_ran", f"compiled code could not run: {error.message}", detail)
    if error.kind == "graph_break":
        return Finding("graph_break", f"graph break under fullgraph=True: {error.message}", detail)
    if error.kind == "specialised":
        return Finding("export_specialised", f"one export does not serve every batch size: {error.message}", detail)
    form = error.stage.removeprefix("export:").split("@")[0]
    if form in DEPLOYED_KINDS:
        return Finding("export_raised", f"the {form} form raised {error.type} in {error.stage}: {error.message}",
                       detail)
    if error.stage.startswith("reference64"):
        return None  # the target cannot run in float64: the legacy model's float64 run stands in (judged above)
    if error.stage.startswith("legacy64"):
        return Finding("reference64_raised", "no float64 reference could run: the legacy model in float64 raised "
                       f"{error.type}: {error.message}", detail)
    if error.stage.startswith("compiled"):
        return Finding("compiled_raised", f"the compiled target raised {error.type}: {error.message}", detail)
    return Finding("target_raised", f"the target raised {error.type} in {error.stage}: {error.message}", detail)


def _judge_compile(run: CaseRun, verdict: CaseVerdict) -> None:
    stats = run.compile_stats
    allowance = recompile_allowance(run.settings.dynamic, run.batch_sizes)
    verdict.info["compile"] = {**dataclasses.asdict(stats), "batch_sizes": run.batch_sizes,
                               "recompile_allowance": allowance}
    if "compiled" not in run.forms:
        return
    if stats.fell_back_to_eager:
        verdict.findings.append(Finding("compiled_ran", f"compiled code did not run: {stats.reason}"))
    if stats.graph_breaks:
        verdict.findings.append(Finding("graph_break", f"{stats.graph_breaks} graph break(s): {stats.break_reasons}"))
    if stats.recompiles > allowance:
        verdict.findings.append(Finding(
            "recompiles",
            f"{stats.recompiles} recompiles for batch sizes {run.batch_sizes} (dynamic={run.settings.dynamic}); "
            f"at most {allowance} expected when only the batch size changes",
            {"recompiles": stats.recompiles, "allowance": allowance},
        ))
