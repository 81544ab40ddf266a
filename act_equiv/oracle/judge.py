"""The oracle: turns what the runner recorded into a verdict. Strict where the math is identical.

Pairs judged:
- reference/target, at the model level (the inner model's outputs, loss, gradients) and at the policy level (the
  implementation's own policy: loss, action chunk, a select_action rollout): each level gets a class
  (`act_equiv.oracle.verdict.PairClassName`). Bitwise when the bits agree; where they differ, the float64 runs
  decide: both sides agreeing to float64 rounding (assert_close's float64 tolerance) *and* the target's float32 as
  close to the reference's float64 as the reference's own float32 (`rounding_evidence`) is `rounding`, otherwise
  `divergent` (a target's own float64 run cannot vouch for a path it takes only in float32); a NaN or inf on one
  side only is always `divergent`; where a side cannot run in float64, assert_close's float32 tolerance decides
  and the class says so.
  Errors at a level's calls make it `raised`, or `raised-both` when both sides raise the same type at the same
  call; a state_dict that does not load is `layout`; a side that cannot express the case, `unsupported`.
  Rounding and raised-both pass with a warning unless the run is strict;
- reference/target@batchN: in the compiled stage, the model level again at each further batch size the target ran
  at (in training too): where the case's size was bitwise, it must be bitwise there too, or the model level is
  divergent (a bug that shows only past some batch size);
- target/target_repeat: eager run twice under the same seed must be bitwise equal, or nothing else can be
  trusted (PyTorch's accuracy checker's "eager_two_runs_differ");
- reference/target_fresh: the target's instance runs a batch of other values before the case's; where it then
  differs from the reference, a fresh instance with the same weights runs the case once: equal to the reference bit
  for bit, the difference is the instance's history, a `stateful` finding;
- target/compiled: the compiled target against its eager self, per the tolerance table (outputs and gradients
  each their own), with the fp64-referenced check where a compiler may reorder floating point; in eval also
  at every further batch size the compiled graph was called with (the dynamic-shape graph);
- target/<deployment form> (eval): the actions of each deployment form (exported, onnx, aoti) against the eager
  target at every size it ran, per the tolerance table; one export must serve them all (`export_specialised`),
  and an exporter or runtime that raises is a finding (`export_raised`);
- the reference must be finite: a NaN or inf in its outputs leaves nothing to compare against.
The fp64 reference of the compiled check is the target's own float64 run, or the reference's where the target
cannot run in float64 (LeRobot's zero latent is hard-coded float32) and the target agrees with the reference
bitwise: then both compute the same float32 numbers and the reference's float64 run is exact for both. The verdict
says which served. Under autocast, the reference must really have run in mixed precision (else the run tests full
precision). Compile hygiene: compiled code must have run (no silent eager fallback), no graph break, and recompiles
within the allowance for the dynamic-shape setting when only the batch size changes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from act_equiv.forms import FORMS
from act_equiv.oracle import trajectory
from act_equiv.oracle.compare import compare, non_finite
from act_equiv.oracle.tolerance import (
    EAGER_ROUNDING,
    EXACT,
    Tolerance,
    rounding_evidence,
    tolerance_for,
    trajectory_envelope,
)
from act_equiv.oracle.verdict import CaseVerdict, Finding, PairClass, TensorCheck, innermost_frame
from act_equiv.run.numerics import AUTOCAST_DTYPES, DTYPES
from act_equiv.run.records import CaseRun, ErrorRecord, batch_suffix
from act_equiv.run.training import TRAINED


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


def judge(run: CaseRun, strict: bool = False) -> CaseVerdict:
    """The verdict of one case. `strict`: the warning classes (rounding, raised-both) fail too."""
    verdict = CaseVerdict(run.case, info={"seconds": round(run.seconds, 3), "settings": run.settings.label(),
                                          "features": run.features})
    settings, outputs = run.settings, run.outputs
    if run.unsupported is not None:
        unsupported = run.unsupported
        evidence = f"{unsupported['side']} {unsupported['spec']} cannot run this case: {unsupported['reason']}"
        # The target losing a case the reference runs is the edit's regression; the reference lacking it is not.
        verdict.classes["model"] = PairClass("model", "unsupported", evidence, accepted=unsupported["side"] != "target")
        if unsupported["side"] != "target":
            verdict.info["skipped"] = evidence
        return verdict
    for error in run.errors:
        finding = _error_finding(error, run)
        if finding is None:
            verdict.info.setdefault("not_judged", []).append(f"{error.call}: {error.type}: {error.message}")
        elif not any(found.check == finding.check == "input_mutated" and found.message.split(":")[0] ==
                     finding.message.split(":")[0] for found in verdict.findings):
            verdict.findings.append(finding)  # a side's input mutation once: every later call repeats it
    if settings.autocast is not None:
        _judge_autocast(run, verdict)
    if "reference" in outputs:
        broken = non_finite(outputs["reference"])
        if broken:
            verdict.findings.append(Finding(
                "reference_not_finite", f"the reference is not finite on {run.case.describe()} "
                f"({', '.join(f'{name}: {info}' for name, info in sorted(broken.items()))}): nothing can be compared "
                "with it", {"tensors": broken}))
    for level in LEVELS:
        pair_class, checks = _classify(run, level, strict)
        if pair_class is not None:
            verdict.classes[level.name] = pair_class
        verdict.checks += trajectory.condense(checks) if level.form == "_trajectory" else checks
    trajectory.judge_trajectories(run, verdict)
    verdict.checks += _judge_further_sizes(run, verdict)
    if "target_repeat" in outputs:
        repeat = compare(outputs["target"], outputs["target_repeat"], "target/target_repeat", EXACT)
        if not all(check.passed for check in repeat):
            verdict.findings.append(Finding("eager_nondeterministic", "the target's eager forward gave different "
                                            "results on two runs with the same seed; no comparison can be trusted"))
        verdict.checks += repeat
        if "target_fresh" in outputs and "reference" in outputs:
            fresh = compare(outputs["reference"], outputs["target_fresh"], "reference/target_fresh", EXACT)
            if all(check.passed for check in fresh):
                verdict.findings.append(Finding(
                    "stateful", "the target's outputs depend on what it ran before: a fresh instance with the same "
                    "weights computes the reference's outputs bit for bit, but the instance that first ran a batch of "
                    "other values does not (a cache or buffer that outlives a call; a loop calling the model would "
                    "drift)"))
                verdict.checks += fresh  # evidence only where it explains the difference: else the level says it
    if "compiled" in outputs:
        verdict.checks += _judge_compiled(run, verdict)
    if run.deployed_sizes:
        verdict.checks += _judge_deployed(run, verdict)
    if run.compile_stats is not None:
        _judge_compile(run, verdict)
    if run.explain:
        verdict.info["explain"] = run.explain
    return verdict


@dataclass(frozen=True)
class Level:
    """One level of a comparison of two sides: its outputs ("<side><form>", float64 evidence "<side><form>64") and
    the calls whose errors belong to it (the expected side's call -> the actual side's call of the same step).
    The sides are the reference and the target, or for a compiled trajectory the target eager and compiled."""

    name: str
    form: str
    calls: dict[str, str]
    sides: tuple[str, str] = ("reference", "target")
    agreement: str = "64"
    """The suffix of the float64 runs whose agreement is evidence: "64" draw the float32 runs' random numbers (they
    are also the yardstick of the float32-only path check); "64native", a compiled run's, draw their own float64
    numbers (inside a compiled graph float32 draws cannot be replayed), the same on both sides."""

    @property
    def pair(self) -> str:
        return "/".join(self.sides) + ("" if self.name == "model" else f" {self.form.strip('_')}")

    def outputs(self, suffix: str = "") -> tuple[str, str]:
        """The (expected, actual) output names, with `suffix` ("64")."""
        return tuple(f"{side}{self.form}{suffix}" for side in self.sides)  # type: ignore[return-value]


LEVELS = (
    Level("model", "", {"reference:build": "build", "reference:forward": "forward"}),
    Level("policy", "_policy", {"reference:policy": "policy"}),
    Level("trajectory", "_trajectory", {"reference:train": "train"}),
    *(Level(f"trajectory {trained}", "_trajectory", {}, ("target", trained), "64native") for trained in TRAINED[1:]),
)
"""The pairs classed (`PairClassName`): reference/target at the model and policy level and over training steps,
and the target's compiled trajectories against its eager one (their errors are the compiled form's findings)."""


def _classify(run: CaseRun, level: Level, strict: bool) -> tuple[PairClass | None, list[TensorCheck]]:
    """The level's class and the checks behind it (see `PairClassName`)."""
    outputs, s = run.outputs, run.settings
    errors = {error.call: error for error in run.errors if error.kind != "input_mutated"}  # a finding of its own
    raised = [call for call in (*level.calls, *level.calls.values()) if call in errors]
    lacking = [call for call in raised if errors[call].kind == "unsupported"]
    if lacking:
        side = "reference" if lacking[0].startswith("reference") else "target"
        return PairClass(level.name, "unsupported", f"the {side} cannot run the {level.name} level: "
                         f"{errors[lacking[0]].message}", accepted=side != "target"), []
    if raised:
        both = [(ref, tgt) for ref, tgt in level.calls.items() if ref in errors and tgt in errors
                and errors[ref].type == errors[tgt].type]
        if both:
            ref, tgt = both[0]
            evidence = (f"both sides raise {errors[ref].type} at {tgt} (behaviour unchanged): reference: "
                        f"{errors[ref].message} [{where(errors[ref])}]; target: {errors[tgt].message} "
                        f"[{where(errors[tgt])}]")
            return PairClass(level.name, "raised-both", evidence, accepted=not strict,
                             detail={"reference": _error_detail(errors[ref]), "target": _error_detail(errors[tgt])}), []
        first = errors[raised[0]]
        side = "reference" if raised[0].startswith("reference") else "target"
        return PairClass(level.name, "raised", f"the {side} raised {first.type} at {raised[0]}: {first.message} "
                         f"[{where(first)}]", accepted=False, detail={side: _error_detail(first)}), []
    layout = run.layouts.get(level.name)
    if layout is not None:
        return PairClass(level.name, "layout", layout_evidence(level.name, layout), accepted=False,
                         detail={"layout": layout}), []
    (expected, actual), (reference, target) = level.sides, (outputs.get(name) for name in level.outputs())
    if not reference and not target:  # nothing at this level (act_equiv's own policy adds nothing in training)
        return None, []
    if reference is None or target is None:
        return None, []
    checks = compare(reference, target, level.pair, EXACT)
    if all(check.passed for check in checks):
        return PairClass(level.name, "bitwise", f"{len(checks)} tensors bitwise equal", (level.pair,)), checks
    differs = _differs(checks)
    non_finite = [check for check in checks if check.kind in ("nan", "inf")]
    if non_finite:  # NaN or inf on one side only: never rounding, whatever the float64 runs say
        return PairClass(level.name, "divergent", f"{differs}: a non-finite value where the other side's is "
                         f"finite (or another one) is never rounding", (level.pair,), accepted=False), checks
    agree64, target64 = (outputs.get(name) for name in level.outputs(level.agreement))
    reference64 = outputs.get(level.outputs("64")[0])
    if agree64 is not None and target64 is not None and reference64 is not None:
        pair64 = f"{level.pair} float64"
        checks64 = compare(agree64, target64, pair64, EAGER_ROUNDING[torch.float64])
        worst64 = max(checks64, key=lambda c: c.max_abs)
        if not all(check.passed for check in checks64):
            return PairClass(level.name, "divergent", f"{differs}, and run in float64 they differ too (max |diff| "
                             f"{worst64.max_abs:.3g} on {worst64.tensor}): not rounding", (level.pair, pair64),
                             accepted=False), checks + checks64
        # The actual side's float32 must be as close to the expected side's float64 as the expected side's own
        # float32 is: a path taken only in float32 cannot be vouched for by its own float64 run. In a trajectory, at
        # the first step: later steps compound the sides' rounding (`act_equiv.oracle.trajectory`), which of two
        # honest float32 runs ends closer to float64 is chance, and the float64 runs' agreement judges them.
        pair_evidence = f"{level.pair} vs {expected} float64"
        trained = level.form == "_trajectory"
        evidence = (trajectory_envelope if trained else rounding_evidence)(DTYPES[s.dtype], s.autocast)
        first = trajectory.first_step if trained else dict
        against64 = compare(first(reference), first(target), pair_evidence, evidence, first(reference64),
                            roles=(actual, expected), floors=trajectory.floors(first(reference), first(reference64)))
        failed = [check for check in against64 if not check.passed]
        if failed:
            return PairClass(level.name, "divergent", f"{differs}; run in float64 both sides agree, but the "
                             f"{actual}'s float32 {failed[0].tensor} is further from the {expected}'s float64 than "
                             f"the {expected}'s own float32 ({expected} float64 as the judge, {evidence.describe()}): "
                             "a float32-only path, not rounding", (level.pair, pair64, pair_evidence),
                             accepted=False), checks + checks64 + against64
        return PairClass(level.name, "rounding", f"{differs}; run in float64 both sides agree to float64 rounding "
                         f"(max |diff| {worst64.max_abs:.3g}, {EAGER_ROUNDING[torch.float64].describe()}), and the "
                         f"{actual}'s float32 is as close to the {expected}'s float64 as the {expected}'s own",
                         (level.pair, pair64, pair_evidence), accepted=not strict), checks + checks64 + against64
    tolerance = tolerance_for("eager", DTYPES[s.dtype], eager_rounding=True, autocast=s.autocast)
    pair32 = f"{level.pair} rounding"
    rounded = compare(reference, target, pair32, tolerance)
    if all(check.passed for check in rounded):
        return PairClass(level.name, "rounding", f"{differs}; a side cannot run in float64, so judged by "
                         f"assert_close's tolerance ({tolerance.describe()}): within it", (level.pair, pair32),
                         accepted=not strict, label="rounding (tolerance only, no float64 evidence)"), checks + rounded
    return PairClass(level.name, "divergent", f"{differs}, beyond assert_close's tolerance ({tolerance.describe()}); "
                     "no float64 run of both sides was possible", (level.pair, pair32),
                     accepted=False), checks + rounded


def _judge_further_sizes(run: CaseRun, verdict: CaseVerdict) -> list[TensorCheck]:
    """The model level at each further batch size both sides ran at, where the case's size was bitwise: bitwise there
    too, or the level is divergent. (Where the case's size was rounding, there is no float64 run at the further sizes
    to judge rounding by, and an element-wise bound alone would call honest rounding divergent: not judged.)"""
    model = verdict.classes.get("model")
    if model is None or model.name != "bitwise":
        return []
    case, checks = run.case, []
    sizes = sorted(int(name.removeprefix("reference@batch")) for name in run.outputs if name.startswith("reference@"))
    for size in sizes:
        suffix = f"@batch{size}"
        if f"target{suffix}" not in run.outputs:
            continue
        pair = f"reference/target{suffix}"
        found = compare(run.outputs[f"reference{suffix}"], run.outputs[f"target{suffix}"], pair, EXACT)
        checks += found
        failed = [check for check in found if not check.passed]
        if failed and verdict.classes["model"] is model:
            verdict.classes["model"] = PairClass(
                "model", "divergent", f"bitwise at the case's batch size {case.batch.batch_size}, but not at "
                f"batch {size}: max |diff| {failed[0].max_abs:.3g} on {failed[0].tensor} at "
                f"index {failed[0].where}", (*model.pairs, pair), accepted=False)
    return checks


def _differs(checks: list[TensorCheck]) -> str:
    """How the float32 outputs differ, a non-finite difference first (it has no size)."""
    failed = [check for check in checks if not check.passed]
    non_finite = [check for check in failed if check.kind in ("nan", "inf")]
    if non_finite:
        return f"float32 outputs differ: {non_finite[0].message}" + (
            f" (and {len(non_finite) - 1} more tensor(s) non-finite on one side)" if len(non_finite) > 1 else "")
    worst = max(failed, key=lambda c: c.max_abs)
    return f"float32 outputs differ (max |diff| {worst.max_abs:.3g} on {worst.tensor})"


def layout_evidence(level: str, layout: dict[str, list[str]]) -> str:
    """What changed in a checkpoint's layout, and where a wrapper renamed every key, the usual fix."""
    if layout.get("checkpoint"):
        return f"checkpoint round trip failed: {layout['checkpoint'][0]}"
    checkpoint = "state_dict" if level == "model" else "policy's state_dict (as its constructor builds it)"
    text = (f"checkpoint layout changed: the reference's {checkpoint} does not load strict=True into the target's, "
            "nor the target's into the reference's")
    segment = inserted_segment(layout["missing"], layout["unexpected"])
    if segment is not None:
        first = layout["missing"][0]
        renamed = next(key for key in layout["unexpected"] if _without(key, segment) == first)
        text += f": every key gains `{segment}.` ({len(layout['missing'])} keys, e.g. {first} -> {renamed})"
        if segment == "_orig_mod":
            text += (", a torch.compile'd module replaced the original (pytorch#101107); save "
                     "getattr(model, '_orig_mod', model).state_dict(), or compile the forward "
                     "(model.forward = torch.compile(model.forward)) rather than replace the module")
        return text
    parts = [f"{name} {layout[name][:5]}" + (f" and {len(layout[name]) - 5} more" if len(layout[name]) > 5 else "")
             for name in ("missing", "unexpected", "shapes") if layout.get(name)]
    return f"{text} ({', '.join(parts)})"


def inserted_segment(missing: list[str], unexpected: list[str]) -> str | None:
    """The one dotted segment a wrapper inserted into every key (`model.x` -> `model._orig_mod.x`), if that is the
    whole difference."""
    if not missing or len(missing) != len(unexpected):
        return None
    for segment in unexpected[0].split("."):
        if {_without(key, segment) for key in unexpected} == set(missing):
            return segment
    return None


def _without(key: str, segment: str) -> str:
    """`key` without the first dotted part equal to `segment`."""
    parts = key.split(".")
    if segment in parts:
        parts.remove(segment)
    return ".".join(parts)


def _judge_compiled(run: CaseRun, verdict: CaseVerdict) -> list[TensorCheck]:
    """Compiled vs eager target at the case's batch size and at each further one the graph was called with."""
    s, outputs = run.settings, run.outputs

    def tolerance(tensor: str) -> Tolerance:
        return tolerance_for("compiled", DTYPES[s.dtype], s.backend, autocast=s.autocast,
                             training=run.case.training, gradient=tensor.startswith("grad/"))

    checks = []
    for size in run.batch_sizes or [run.case.batch.batch_size]:
        suffix = batch_suffix(run.case, size)
        pair = f"target/compiled{suffix}"
        checks += compare(outputs[f"target{suffix}"], outputs[f"compiled{suffix}"], pair, tolerance,
                          _reference64(run, verdict, suffix), form="compiled")
    verdict.info.setdefault("compared_forms", []).append("compiled")
    return checks


def _judge_deployed(run: CaseRun, verdict: CaseVerdict) -> list[TensorCheck]:
    """Each deployment form's actions vs the eager target's at every size it ran (the runner stops a form at its
    first error, which is a finding of its own)."""
    s, outputs = run.settings, run.outputs
    verdict.info["deployed"] = {**run.deployed, "batch_sizes": run.deployed_sizes}
    checks = []
    for form in s.deployed_forms:
        tolerance = tolerance_for(FORMS[form].tolerance, DTYPES[s.dtype])
        for size in run.deployed_sizes:
            suffix = batch_suffix(run.case, size)
            if f"{form}{suffix}" not in outputs:
                break
            checks += compare({"actions": outputs[f"target{suffix}"]["actions"]}, outputs[f"{form}{suffix}"],
                              f"target/{form}{suffix}", tolerance, _reference64(run, verdict, suffix), form=form)
            if form not in verdict.compared_forms:
                verdict.info.setdefault("compared_forms", []).append(form)
    return checks


def _reference64(run: CaseRun, verdict: CaseVerdict, suffix: str) -> dict | None:
    """The float64 reference the fp64-referenced check may use, and which form served (recorded in the verdict)."""
    outputs = run.outputs
    if f"target64{suffix}" in outputs:
        verdict.info["reference64"] = "target float64"
        return outputs[f"target64{suffix}"]
    if f"reference64{suffix}" in outputs:
        model = verdict.classes.get("model")
        if model is not None and model.name == "bitwise":
            verdict.info["reference64"] = "reference float64 (the target cannot run in float64)"
            return outputs[f"reference64{suffix}"]
        verdict.info["reference64"] = ("none: the target cannot run in float64 and differs from the reference in "
                                       "float32, so no float64 run is exact for it (element-wise tolerance only)")
    return None


def _judge_autocast(run: CaseRun, verdict: CaseVerdict) -> None:
    """An autocast run must have run in mixed precision: the legacy action head (a Linear, autocast-eligible)
    then returns the autocast dtype. Otherwise autocast was silently off and the run tested full precision."""
    actions = run.outputs.get("reference", {}).get("actions")
    if actions is not None and actions.dtype != AUTOCAST_DTYPES[run.settings.autocast]:
        verdict.findings.append(Finding(
            "autocast_ran", f"autocast {run.settings.autocast} was asked for, but the reference's actions "
            f"are {actions.dtype}: autocast did not take effect on {run.settings.device}"))


def _error_detail(error: ErrorRecord) -> dict[str, Any]:
    return {"call": error.call, "type": error.type, "message": error.message, "traceback": error.traceback}


def where(error: ErrorRecord) -> str:
    """The innermost frame of an error's traceback in one line: `modeling_act.py:455 in forward: batch[...]`."""
    frame = innermost_frame(error.traceback)
    if frame is None:
        return "no traceback"
    name, line, function, code = frame
    return f"{name}:{line} in {function}" + (f": {code}" if code else "")


LEVEL_CALLS = frozenset(call for level in LEVELS for pair in level.calls.items() for call in pair)
"""Stages whose errors the pair classes judge (raised, raised-both), not a finding of their own."""
EVIDENCE_CALLS = frozenset({"reference64", "target64", "reference_policy64", "target_policy64", "compiled:target64",
                             "fresh", "reference_trajectory64", "target_trajectory64",
                             "reference_trajectory_nodropout", "target_trajectory_nodropout",
                             *(f"{side}_trajectory64native" for side in ("target", *TRAINED[1:]))})
"""Float64 runs that may fail without a finding: then there is no float64 evidence (or the reference's stands in)."""


def _error_finding(error: ErrorRecord, run: CaseRun) -> Finding | None:
    detail = {"call": error.call, "type": error.type, "traceback": error.traceback}
    if error.call == "warm-up" and any(other.call != "warm-up" and other.type == error.type
                                        and not other.call.startswith("reference") for other in run.errors):
        return None  # the target's own call says it (the model level's class, or the same finding)
    if error.kind == "worker_failed":
        return Finding("worker_failed", f"{error.call}: {error.message}", detail)
    if error.kind == "input_mutated":
        side = "reference" if error.call.startswith("reference") else "target"
        return Finding("input_mutated", f"the {side}: {error.message} (at {error.call})", detail)
    if error.call.startswith("explain:") or error.call in LEVEL_CALLS or error.call in EVIDENCE_CALLS:
        return None
    if error.call == "compiled:reference64":
        return Finding("reference64_raised", "no float64 reference could run: the reference in float64 raised "
                       f"{error.type}: {error.message}", detail)
    if error.kind == "not_compiled":
        return Finding("compiled_ran", f"compiled code could not run: {error.message}", detail)
    if error.kind == "graph_break":
        return Finding("graph_break", f"graph break under fullgraph=True: {error.message}", detail)
    if error.kind == "specialised":
        return Finding("export_specialised", f"one export does not serve every batch size: {error.message}", detail)
    if error.form is not None:
        return Finding(FORMS[error.form].raised, f"the {error.form} form of the target raised {error.type} in "
                       f"{error.call}: {error.message}", detail)
    if error.call.startswith("reference"):
        return Finding("reference_raised", f"the reference raised {error.type} in {error.call}: {error.message}",
                       detail)
    return Finding("target_raised", f"the target raised {error.type} in {error.call}: {error.message}", detail)


def _judge_compile(run: CaseRun, verdict: CaseVerdict) -> None:
    stats = run.compile_stats
    allowance = recompile_allowance(run.settings.dynamic, run.batch_sizes)
    verdict.info["compile"] = {**dataclasses.asdict(stats), "batch_sizes": run.batch_sizes,
                               "recompile_allowance": allowance}
    if "compiled" not in run.outputs:
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
