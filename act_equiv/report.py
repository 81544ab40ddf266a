"""Reports: verdicts (as dicts) in, `report.json`, `summary.md` and JUnit XML out. Lays out; never judges, and
renders no failure or tolerance text of its own: a verdict carries its `failures` lines and each check its
`tolerance.describe` (`act_equiv.oracle.verdict`). Imports no torch.

Schema `act_equiv.report/4` is documented in reports/README.md.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from act_equiv import plots
from act_equiv.baseline import known_findings
from act_equiv.coverage import describe_exclusions, drawn_not_compared, interactions

if TYPE_CHECKING:  # verdict.py imports torch; the report reads verdicts as dicts
    from act_equiv.oracle.verdict import FindingKind

SCHEMA = "act_equiv.report/4"
MARKDOWN_FAILURES = 10
"""summary.md renders at most this many failures; report.json keeps them all."""
MARKDOWN_FAILURE_LINES = 8
"""...and at most this many of each failure's lines."""


STAGES = {"covering": "covering array", "eager": "eager sweep", "compiled": "compiled search"}
"""Verdicts by the stage that drew them (a pytest session's verdicts carry no stage: "suite")."""


def coverage(verdicts: Iterable[dict]) -> dict[str, dict[str, Any]]:
    """Per stage: cases per value of each interacting feature (as the cases really had them: padding only where a
    step was padded, distinct grids only where the feature maps differ), other draws, and the 3-way interactions
    hit. The eager stages (covering array and eager sweep) are also counted together: they judge the same forms."""
    by_stage: dict[str, list[dict]] = defaultdict(list)
    for v in verdicts:
        if v["info"].get("features"):
            by_stage[v["info"].get("stage", "suite")].append(v)
    if "covering" in by_stage and "eager" in by_stage:
        by_stage["eager stages"] = by_stage["covering"] + by_stage["eager"]
    order = [*STAGES, "eager stages"]
    stages = sorted(by_stage, key=lambda name: order.index(name) if name in order else len(order))
    return {stage: _stage_coverage(by_stage[stage]) for stage in stages}


def uncompared_reason(verdict: dict) -> str:
    """Why a case compared nothing, in words that group alike cases (no message, no numbers)."""
    for pair_class in verdict["classes"].values():
        if pair_class["name"] == "raised-both":
            error = pair_class["detail"]["target"]
            return f"both sides raise {error['type']} at {error['call']}"
        if pair_class["name"] == "unsupported":
            return f"unsupported: {pair_class['evidence']}"
    return next((f"{level}: {c['name']}" for level, c in verdict["classes"].items()), "no reference/target pair")


def _stage_coverage(all_verdicts: list[dict]) -> dict[str, Any]:
    """A stage's coverage, counting the cases that compared something; the combinations only the others drew are
    listed with the reason."""
    verdicts = [v for v in all_verdicts if v["compared"]]
    counts: dict[str, Counter] = defaultdict(Counter)
    for v in verdicts:
        for name, value in v["info"]["features"].items():
            counts[name][str(value)] += 1
        case = v["case"]
        counts["batch_size"][str(case["batch"]["batch_size"])] += 1
        counts["pad"][case["batch"]["pad"]] += 1
        counts["scale"][f"{case['batch']['scale']:g}"] += 1
        counts["backbone"][case["config"]["vision_backbone"]] += 1
    table = interactions([v["info"]["features"] for v in verdicts])
    lost = drawn_not_compared([v["info"]["features"] for v in verdicts],
                              [(v["info"]["features"], uncompared_reason(v)) for v in all_verdicts
                               if not v["compared"]])
    return {"cases": len(verdicts), "drawn": len(all_verdicts),
            "features": {name: dict(sorted(c.items())) for name, c in counts.items()},
            "interactions": table, "drawn_not_compared": lost}


def rows_not_compared(verdicts: list[dict]) -> list[dict[str, Any]]:
    """The covering-array rows none of whose cases compared anything (their 3-way combinations may then be
    covered by no compared case): row, its first case, and the reason."""
    rows: dict[int, list[dict]] = defaultdict(list)
    for v in verdicts:
        if "row" in v["info"]:
            rows[v["info"]["row"]].append(v)
    return [{"row": row, "first": cases[0]["describe"], "reason": uncompared_reason(cases[0])}
            for row, cases in sorted(rows.items()) if not any(v["compared"] for v in cases)]


def pair_errors(verdicts: Iterable[dict]) -> dict[str, dict[str, Any]]:
    """Per form pair and run settings ("target/compiled @ cpu float32, inductor"): the greatest absolute/relative
    error over all tensors, its tolerance and least margin."""
    pairs: dict[str, dict[str, Any]] = {}
    for v in verdicts:
        label = v["info"].get("settings")
        for check in v["checks"]:
            key = f"{check['pair']} @ {label}" if label else check["pair"]
            entry = pairs.setdefault(key, {"tensors": 0, "max_abs": 0.0, "max_rel": 0.0, "min_margin": 1.0,
                                           "failed": 0, "tolerance": set()})
            entry["tensors"] += 1
            entry["failed"] += not check["passed"]
            if check["kind"] in ("close", "mismatch", "nan", "inf"):  # a non-finite difference is an infinite one
                if check["max_abs"] > entry["max_abs"]:
                    entry["max_abs"], entry["worst_tensor"] = check["max_abs"], check["tensor"]
                entry["max_rel"] = max(entry["max_rel"], check["max_rel"])
            entry["min_margin"] = min(entry["min_margin"], check["margin"])
            entry["tolerance"].add(check["tolerance"]["describe"])
    for entry in pairs.values():
        entry["tolerance"] = sorted(entry["tolerance"])
    return dict(sorted(pairs.items()))


def compile_summary(verdicts: list[dict]) -> dict[str, Any]:
    compiled = [v for v in verdicts if "compile" in v["info"]]
    references = Counter(v["info"]["reference64"] for v in verdicts if "reference64" in v["info"])
    seconds = [v["info"]["compile"]["compile_seconds"] for v in compiled]
    structures = {(json.dumps(v["case"]["config"], sort_keys=True), v["case"]["training"]) for v in compiled}
    explains: dict[str, Counter] = defaultdict(Counter)
    reasons: set[str] = set()
    for v in verdicts:
        reasons.update(f["message"] for f in v["findings"] if f["check"] == "graph_break")
        for form, result in (v["info"].get("explain") or {}).items():
            if result:
                explains[form][f"{result['graph_count']} graph(s), {result['graph_break_count']} break(s)"] += 1
                reasons.update(result["break_reasons"])
    by_settings: dict[str, list[float]] = defaultdict(list)
    for v in compiled:
        by_settings[v["info"].get("settings", "")].append(v["info"]["compile"]["compile_seconds"])
    return {
        "compiled_cases": len(compiled),
        "compile_seconds_by_settings": {
            label: {"cases": len(times), "median": round(statistics.median(times), 2), "max": round(max(times), 2)}
            for label, times in sorted(by_settings.items())},
        "distinct_compiled_structures": len(structures),
        "compile_seconds_total": round(sum(seconds), 2),
        "compile_seconds_median": round(statistics.median(seconds), 2) if seconds else None,
        "recompiles": dict(Counter(str(v["info"]["compile"]["recompiles"]) for v in compiled)),
        "fell_back_to_eager": sum(v["info"]["compile"]["fell_back_to_eager"] for v in compiled),
        # Under fullgraph=True a break raises (a graph_break finding) before the stats count it: count either.
        "graph_breaks_compiled": sum(max(v["info"]["compile"]["graph_breaks"],
                                         sum(f["check"] == "graph_break" for f in v["findings"])) for v in compiled),
        "explain": {form: dict(counter) for form, counter in explains.items()},
        "break_reasons": sorted(reasons),
        "reference64": dict(references),
    }


CLASS_ORDER = ("divergent", "raised", "layout", "unsupported", "raised-both", "rounding", "bitwise")
"""Verdict classes, worst first: a run's class per level is the worst of its cases'."""
WARNINGS_SHOWN = 5


def classes(verdicts: list[dict]) -> dict[str, dict[str, Any]]:
    """Per level (model, policy): the run's class (the worst case's), cases per class, and the distinct warnings
    (rounding, raised-both), each with the first case that gave it and how many did."""
    levels: dict[str, dict[str, Any]] = {}
    for verdict in verdicts:
        for level, pair_class in verdict.get("classes", {}).items():
            entry = levels.setdefault(level, {"counts": Counter(), "warnings": {}, "labels": {}})
            # A refused class of a passing case is one a baseline accepted.
            key = pair_class["name"] + (" (known)" if not pair_class["accepted"] and verdict["passed"] else "")
            entry["counts"][key] += 1
            entry["labels"][key] = pair_class["label"] or key
            if pair_class["warning"]:
                prefix = f"[{level}: {entry['labels'][key]}] "
                seen = entry["warnings"].setdefault(prefix + _generic(pair_class["evidence"]), {"cases": 0})
                seen["cases"] += 1
                if seen["cases"] == 1 or _max_diff(pair_class["evidence"]) > _max_diff(seen["evidence"]):
                    seen.update(text=prefix + pair_class["evidence"], evidence=pair_class["evidence"],
                                case=verdict["describe"])
    summary = {}
    for level, entry in levels.items():
        worst = min(entry["counts"], key=lambda key: (CLASS_ORDER.index(key.removesuffix(" (known)")),
                                                      key.endswith(" (known)")))
        warnings = [f"{seen['text']} ({seen['cases']} case(s); " + ("worst" if "max |diff|" in seen["text"] else
                                                                      "first") + f": {seen['case']})"
                    for seen in list(entry["warnings"].values())[:WARNINGS_SHOWN]]
        summary[level] = {"class": entry["labels"][worst], "counts": dict(entry["counts"]), "warnings": warnings}
    return summary


def _max_diff(evidence: str) -> float:
    """The first `max |diff| X` of a warning's evidence (0 without one): the worst case of a group is shown."""
    found = re.search(r"max \|diff\| ([0-9.e+-]+)", evidence)
    return float(found.group(1)) if found else 0.0


def _generic(evidence: str) -> str:
    """A warning's evidence without its numbers, so that one cause is listed once however many cases showed it."""
    return re.sub(r"\d+(\.\d+)?(e-?\d+)?", "#", evidence) if "max |diff|" in evidence else evidence


def deployed_summary(verdicts: list[dict]) -> dict[str, dict[str, Any]]:
    """Per deployment form: the cases it ran in, the exports made (a structure's export is reused with each case's
    weights where the form can take them), the distinct structures exported, export seconds and batch sizes."""
    forms: dict[str, dict[str, Any]] = {}
    for v in verdicts:
        deployed = v["info"].get("deployed") or {}
        for form, entry in deployed.items():
            if form == "batch_sizes":
                continue
            row = forms.setdefault(form, {"cases": 0, "exports": 0, "structures": set(), "export_seconds": [],
                                          "batch_sizes": set()})
            row["cases"] += 1
            row["batch_sizes"].update(deployed["batch_sizes"])
            if entry["exported"]:
                row["exports"] += 1
                row["structures"].add(json.dumps(v["case"]["config"], sort_keys=True))
                row["export_seconds"].append(entry["export_seconds"])
    return {form: {"cases": row["cases"], "exports": row["exports"], "distinct_structures": len(row["structures"]),
                   "export_seconds_median": round(statistics.median(row["export_seconds"]), 2)
                   if row["export_seconds"] else None,
                   "export_seconds_max": max(row["export_seconds"], default=None),
                   "export_seconds_total": round(sum(row["export_seconds"]), 2),
                   "batch_sizes": sorted(row["batch_sizes"])} for form, row in sorted(forms.items())}


TRAJECTORIES_SHOWN = 5
"""summary.md tabulates (and plots) at most this many trajectory pairs that are not bitwise; report.json keeps all."""


def trajectories(verdicts: list[dict]) -> dict[str, Any]:
    """The training trajectories (`act_equiv.oracle.trajectory`): cases per level and class, and every pair that is
    not bitwise with its per-step error beside the float64 envelope (divergent ones first)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    differing = []
    for verdict in verdicts:
        for level, pair_class in verdict.get("classes", {}).items():
            if not level.startswith("trajectory"):
                continue
            counts[level][pair_class["name"]] += 1
            if pair_class["name"] != "bitwise" and pair_class["detail"].get("steps"):
                differing.append({"case": verdict["describe"], "level": level, "class": pair_class["name"],
                                  "pair": pair_class["pairs"][0], "steps": pair_class["detail"]["steps"],
                                  "dropout": pair_class["detail"].get("dropout", "")})
    differing.sort(key=lambda entry: entry["class"] != "divergent")
    return {"counts": {level: dict(found) for level, found in counts.items()}, "differing": differing}


def nothing_compared(verdicts: list[dict]) -> str | None:
    """Why a run that judged cases compared none of them (the commonest reasons, with their counts), or None: such a
    run proves nothing, so it never passes."""
    if not verdicts or any(v["compared"] for v in verdicts) or any(not v["passed"] for v in verdicts):
        return None
    reasons = Counter(next((c["evidence"] for c in v["classes"].values()), "no reference/target pair was judged")
                      for v in verdicts)
    return (f"nothing compared: none of the {len(verdicts)} cases compared the reference's outputs with the "
            "target's; " + "; ".join(f"{reason} ({n} case(s))" for reason, n in reasons.most_common(3)))


def forms_not_checked(verdicts: Iterable[dict], requested: Iterable[str]) -> list[str]:
    """The requested forms of the target that no case compared: such a run says nothing about them, so it fails."""
    compared = {form for v in verdicts for form in v["info"].get("compared_forms", [])}
    return [form for form in requested if form not in compared]


def build(verdicts: list[dict], environment: dict[str, Any], run: dict[str, Any],
          failures: list[dict] | None = None, stale: list[str] | None = None) -> dict[str, Any]:
    """The report. `stale`: the baseline entries no case reproduced (a failure under `strict`)."""
    failures = failures if failures is not None else [v for v in verdicts if not v["passed"]]
    empty = nothing_compared(verdicts)
    stale = stale or []
    rows = rows_not_compared(verdicts)
    unchecked = forms_not_checked(verdicts, run.get("forms_requested", []))
    strict = bool(environment.get("strict"))
    return {
        "schema": SCHEMA,
        "run": run,
        "environment": environment,
        "result": {"passed": not failures and empty is None and not unchecked and not (strict and (stale or rows)),
                   "cases": len(verdicts), "compared": sum(v["compared"] for v in verdicts),
                   "nothing_compared": empty, "skipped": sum("skipped" in v["info"] for v in verdicts),
                   "failures": len(failures), "known": known_findings(verdicts), "stale": stale,
                   "rows_not_compared": rows, "forms_not_checked": unchecked},
        "classes": classes(verdicts),
        "coverage": coverage(verdicts),
        "exclusions": describe_exclusions(),
        "pairs": pair_errors(verdicts),
        "compile": compile_summary(verdicts),
        "deployed": deployed_summary(verdicts),
        "trajectories": trajectories(verdicts),
        "failures": failures,
    }


CONSOLE_FAILURE_LINES = 12
CONSOLE_LINE = 400


def console(report: dict[str, Any]) -> list[str]:
    """What a check prints: the verdict per level, the shrunk failure with every config field that differs from
    ACTConfig's defaults and its first failure lines, the warnings in one line each; a screenful, the rest is in
    summary.md. The caller adds the time, the report path and the replay command, which comes last."""
    result, lines = report["result"], []
    if report["failures"]:
        failure = report["failures"][0]
        lines.append(f"FAIL: {failure['describe']}")
        shrink = failure.get("shrink")
        if shrink:
            lines.append(f"  shrunk from: {shrink['first']}")
        lines.append(f"  config (differs from ACTConfig's defaults): {config_changes(failure['case']['config'])}")
        lines += [f"  {line}" for line in _failure_lines(failure)]
        if len(failure["failures"]) > CONSOLE_FAILURE_LINES:
            lines.append(f"  ... {len(failure['failures']) - CONSOLE_FAILURE_LINES} more failure line(s) in "
                         "summary.md")
    elif result.get("nothing_compared"):
        lines.append(f"FAIL: {_clip(result['nothing_compared'])}")
    elif result.get("forms_not_checked"):
        lines.append(f"FAIL: {result['cases']} cases, {result['compared']} compared, but not every form asked for")
    else:
        lines.append(f"PASS: {result['cases']} cases, {result.get('compared', '?')} compared, "
                     f"{report['compile']['distinct_compiled_structures']} compiled structures, "
                     + ", ".join(f"{form} {row['cases']} cases" for form, row in report["deployed"].items())
                     + ("" if report["deployed"] else "no deployment form"))
    for level, pair_class in report["classes"].items():
        counts = ", ".join(f"{name} {n}" for name, n in pair_class["counts"].items())
        lines.append(f"{level} level: {pair_class['class']} ({counts})")
        lines += [f"warning: {_clip(line)}" for line in pair_class["warnings"]]
    return lines + notices(report)


def notices(report: dict[str, Any]) -> list[str]:
    """A line each: the known findings (at most `WARNINGS_SHOWN`, then a count), the stale baseline entries and the
    covering-array rows that compared nothing."""
    result, baseline = report["result"], report["environment"].get("baseline")
    known, stale = result.get("known", {}), result.get("stale", [])
    lines = [f"known: {signature} ({entry['cases']} case(s); first: {entry['first']})"
             for signature, entry in list(known.items())[:WARNINGS_SHOWN]]
    if len(known) > WARNINGS_SHOWN:
        lines.append(f"known: ... {len(known) - WARNINGS_SHOWN} more in summary.md")
    strict = " (a failure: --strict)" if report["environment"].get("strict") else ""
    lines += [f"stale: {signature} (in {baseline}, reproduced by no case){strict}" for signature in stale]
    lines += [f"not checked: {form} (asked for; no case compared it, so the run cannot pass)"
              for form in result.get("forms_not_checked", [])]
    rows = result.get("rows_not_compared", [])
    lines += [f"warning: covering-array row {row['row']} compared nothing ({row['reason']}; first: {row['first']})"
              f"{strict}" for row in rows[:WARNINGS_SHOWN]]
    if len(rows) > WARNINGS_SHOWN:
        lines.append(f"warning: ... {len(rows) - WARNINGS_SHOWN} more covering-array rows compared nothing")
    return [_clip(line) for line in lines]


def step_summary(report: dict[str, Any], replay: str | None) -> str:
    """A short Markdown verdict for a CI job's summary page (GitHub's `GITHUB_STEP_SUMMARY`): the verdict per level,
    the failure with its first lines, the known and stale baseline entries, and the replay command."""
    result = report["result"]
    lines = [f"### act-equiv {report['run'].get('kind', 'check')}: {'PASS' if result['passed'] else 'FAIL'}", "",
             f"`{report['run'].get('command', '')}`", "",
             f"{result['cases']} cases, {result.get('compared', '?')} compared, "
             f"{report['compile']['distinct_compiled_structures']} compiled structures"
             + "".join(f", {form} {row['cases']} cases" for form, row in report["deployed"].items()), "",
             "| level | class | cases per class |", "|---|---|---|"]
    lines += _class_rows(report)
    if report["failures"]:
        failure = report["failures"][0]
        lines += ["", f"**Failure:** {failure['describe']}", "", "```", *_failure_lines(failure), "```"]
    elif result.get("nothing_compared"):
        lines += ["", f"**{_clip(result['nothing_compared'])}**"]
    extra = notices(report)
    if extra:
        lines += ["", *[f"- {line}" for line in extra]]
    if replay:
        lines += ["", f"Replay: `{replay}`"]
    return "\n".join(lines) + "\n"


def _class_rows(report: dict[str, Any]) -> list[str]:
    """The verdict classes as Markdown table rows: level, class, cases per class."""
    return [f"| {level} | {c['class']} | {', '.join(f'{k}: {n}' for k, n in c['counts'].items())} |"
            for level, c in report["classes"].items()]


def _failure_lines(failure: dict[str, Any]) -> list[str]:
    """A failure's first `CONSOLE_FAILURE_LINES` lines, one line each, clipped."""
    return [_clip(_one_line(line)) for line in failure["failures"][:CONSOLE_FAILURE_LINES]]


def config_changes(config: dict[str, Any]) -> str:
    """`name=value` for each config field that differs from ACTConfig's default."""
    from act_equiv.config import ACTConfig

    defaults = {f.name: f.default for f in dataclasses.fields(ACTConfig) if f.default is not dataclasses.MISSING}
    changed = [f"{name}={value}" for name, value in config.items()
               if name not in defaults or _plain(defaults[name]) != _plain(value)]
    return ", ".join(changed) or "none"


def _plain(value: Any) -> Any:
    """Tuples and lists alike, as JSON has them."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _one_line(message: str) -> str:
    """A failure message in one line: its first, with the greatest absolute difference where it has one."""
    first, *rest = message.splitlines() or [""]
    greatest = next((line.strip() for line in rest if line.strip().startswith("Greatest absolute")), None)
    return f"{first}; {greatest}" if greatest else first


def _clip(line: str) -> str:
    return line if len(line) <= CONSOLE_LINE else line[:CONSOLE_LINE - 3] + "..."


def write(report: dict[str, Any], directory: Path) -> Path:
    """report.json, summary.md and, where matplotlib is installed, a plot per tabulated trajectory pair."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, entry in enumerate(report.get("trajectories", {}).get("differing", [])[:TRAJECTORIES_SHOWN]):
        name = f"trajectory-{index}.png"
        if plots.trajectory(entry, directory / name):
            entry["plot"] = name
    (directory / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (directory / "summary.md").write_text(markdown(report))
    return directory / "report.json"


def markdown(report: dict[str, Any]) -> str:
    result, comp = report["result"], report["compile"]
    env = {key: value for key, value in report["environment"].items() if key != "sides"}
    lines = [
        f"# act_equiv {report['run'].get('kind', 'check')}: {'PASS' if result['passed'] else 'FAIL'}",
        "",
        f"`{report['run'].get('command', '')}`",
        "",
        "| " + " | ".join(env) + " |",
        "|" + "---|" * len(env),
        "| " + " | ".join(str(v) for v in env.values()) + " |",
        "",
        *[f"- {role}: " + ", ".join(f"{key} {value}" for key, value in side.items())
          for role, side in report["environment"].get("sides", {}).items()],
        "",
        f"Cases: {result['cases']} ({result.get('compared', '?')} compared, {result['skipped']} skipped), "
        f"failures: {result['failures']}, seconds: {report['run'].get('seconds', '?')}, "
        f"stopped by: {report['run'].get('stopped_by', '-')}",
        *(["", f"**FAIL: {result['nothing_compared']}**"] if result.get("nothing_compared") else []),
        *(["", f"**Not checked: {', '.join(result['forms_not_checked'])}** (asked for; no case compared them)"]
          if result.get("forms_not_checked") else []),
        "",
    ]
    lines += ["## Verdict classes (reference/target)", "", "| level | class | cases per class |", "|---|---|---|"]
    lines += _class_rows(report)
    warnings = [line for c in report["classes"].values() for line in c["warnings"]]
    lines += ["", *[f"- warning: {line}" for line in warnings], ""] if warnings else [""]
    known, stale = result.get("known", {}), result.get("stale", [])
    if known or stale:
        lines += [f"## Known findings (baseline {report['environment'].get('baseline') or 'being recorded'})", "",
                  "| signature | cases | first case |", "|---|---|---|"]
        lines += [f"| {signature} | {entry['cases']} | {entry['first']} |" for signature, entry in known.items()]
        lines += [f"| {signature} | stale: no case reproduced it | |" for signature in stale]
        lines.append("")
    lines += _coverage_markdown(report)
    lines += ["", "## Form pairs", "", "| pair | tensors | max abs | max rel | tolerance | least margin | failed |",
              "|---|---|---|---|---|---|---|"]
    for pair, e in report["pairs"].items():
        lines.append(f"| {pair} | {e['tensors']} | {e['max_abs']:.3g} | {e['max_rel']:.3g} | "
                     f"{'; '.join(e['tolerance'])} | {e['min_margin']:.3g} | {e['failed']} |")
    lines += ["", "## Compile", "",
              f"- compiled cases: {comp['compiled_cases']}, distinct compiled structures: "
              f"{comp['distinct_compiled_structures']}",
              f"- compile seconds: total {comp['compile_seconds_total']}, median {comp['compile_seconds_median']}",
              *[f"  - {label}: {t['cases']} cases, median {t['median']} s, max {t['max']} s"
                for label, t in comp["compile_seconds_by_settings"].items()],
              f"- recompiles per case (count: cases): {comp['recompiles']}",
              f"- silent eager fallbacks: {comp['fell_back_to_eager']}, graph breaks when compiled: "
              f"{comp['graph_breaks_compiled']}",
              f"- eager forms traced by torch._dynamo.explain: {comp['explain'] or 'not measured in this run'}",
              f"- float64 reference of the fp64-referenced check (cases): {comp['reference64'] or 'none needed'}"]
    lines += [f"  - break reason: {reason}" for reason in comp["break_reasons"]]
    if report.get("deployed"):
        lines += ["", "## Deployment forms", "", "| form | cases | exports | distinct structures exported | "
                  "export s median | export s max | batch sizes |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {form} | {d['cases']} | {d['exports']} | {d['distinct_structures']} | "
                  f"{d['export_seconds_median']} | {d['export_seconds_max']} | {d['batch_sizes']} |"
                  for form, d in report["deployed"].items()]
    lines += _trajectories_markdown(report.get("trajectories"))
    failures = report["failures"]
    if len(failures) > MARKDOWN_FAILURES:
        lines += ["", f"{len(failures)} failing verdicts (a pytest session records every shrinking step); the first "
                      f"{MARKDOWN_FAILURES} follow, all are in report.json."]
    for index, failure in enumerate(failures[:MARKDOWN_FAILURES]):
        lines += ["", f"## Failure {index}: {failure['describe']}", "",
                  f"Replay: `{failure.get('replay', '')}`", "", "```"]
        lines += failure["failures"][:MARKDOWN_FAILURE_LINES]
        if len(failure["failures"]) > MARKDOWN_FAILURE_LINES:
            lines.append(f"... {len(failure['failures']) - MARKDOWN_FAILURE_LINES} more in report.json")
        lines += ["```", "", *_shrink_markdown(failure.get("shrink")), "Shrunk case:", "", "```json",
                  json.dumps(failure["case"], indent=1), "```"]
        lines += _compiler_hints(report)
    return "\n".join(lines) + "\n"


def _trajectories_markdown(found: dict[str, Any] | None) -> list[str]:
    if not found or not found["counts"]:
        return []
    lines = ["", "## Training trajectories", "", "Each side's policy trained over the same steps (dropout and the "
             "VAE's draws replayed); a step is rounding while it stays within the float64 envelope.", "",
             "| pair | cases per class |", "|---|---|"]
    lines += [f"| {level} | {', '.join(f'{name}: {n}' for name, n in counts.items())} |"
              for level, counts in found["counts"].items()]
    for entry in found["differing"][:TRAJECTORIES_SHOWN]:
        lines += ["", f"### {entry['level']}: {entry['class']}, {entry['case']}", "",
                  *([f"Dropout: {entry['dropout']}", ""] if entry["dropout"] else []),
                  "| step | class | max abs | max rel | envelope max abs | envelope max rel | worst tensor |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {row['step']} | {row['class']} | {row['max_abs']:.3g} | {row['max_rel']:.3g} | "
                  f"{_number(row.get('envelope_max_abs'))} | {_number(row.get('envelope_max_rel'))} | "
                  f"{row.get('tensor', '')} |" for row in entry["steps"]]
        lines += ["", f"![{entry['level']} per step]({entry['plot']})" if "plot" in entry else
                  f"(no plot: {plots.PLOTS_EXTRA} draws one)"]
    if len(found["differing"]) > TRAJECTORIES_SHOWN:
        lines += ["", f"{len(found['differing']) - TRAJECTORIES_SHOWN} more pairs that are not bitwise are in "
                      "report.json (`trajectories`)."]
    return lines


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def junit(report: dict[str, Any], path: Path) -> None:
    """A JUnit XML file for CI systems: one testcase per failure (type: its finding kinds and the classes it fails
    with, e.g. `model: divergent`, or `divergence` where only tensors differ; message: its replay command; text: its
    `failures` lines) and one for the passing cases."""
    suite = ET.Element("testsuite", name="act-equiv", tests=str(report["result"]["cases"]),
                       failures=str(report["result"]["failures"]))
    for failure in report["failures"]:
        case = ET.SubElement(suite, "testcase", classname="act_equiv.check", name=failure["describe"])
        kinds: list[FindingKind | str] = [finding["check"] for finding in failure["findings"]]
        kinds += [f"{level}: {c['name']}" for level, c in failure.get("classes", {}).items() if not c["accepted"]]
        ET.SubElement(case, "failure", message=failure.get("replay", ""),
                      type=", ".join(kinds) or "divergence").text = "\n".join(failure["failures"])
    for signature, entry in report["result"].get("known", {}).items():
        case = ET.SubElement(suite, "testcase", classname="act_equiv.known", name=signature)
        ET.SubElement(case, "skipped", message=f"known finding (baseline): {entry['cases']} case(s), first: "
                                               f"{entry['first']}")
    passed = report["result"]["cases"] - len(report["failures"])
    ET.SubElement(suite, "testcase", classname="act_equiv.check", name=f"{passed} passing cases")
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="unicode", xml_declaration=True)


def _coverage_markdown(report: dict[str, Any]) -> list[str]:
    stages = report["coverage"]
    if not stages:
        return []
    names = list(stages)
    lines = ["## Coverage", "", "Cases that compared something, per feature value, by stage (features as the cases "
             "really had them; cases both sides raised alike or a side could not run count as drawn, not covered).", "",
             "| feature | " + " | ".join(f"{STAGES.get(n, n)} ({stages[n]['cases']} of {stages[n].get('drawn', '?')} "
                                        "drawn)" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    features = dict.fromkeys(name for n in names for name in stages[n]["features"])
    for feature in features:
        cells = [", ".join(f"{k}: {c}" for k, c in stages[n]["features"].get(feature, {}).items()) for n in names]
        lines.append(f"| {feature} | " + " | ".join(cells) + " |")
    lines += ["", "3-way interactions of the features above (valid combinations hit / total):", "",
              "| stage | hit / total | |", "|---|---|---|"]
    for n in names:
        table = stages[n]["interactions"]
        lines.append(f"| {STAGES.get(n, n)} | {table['hit']} / {table['total']} | "
                     f"{100 * table['hit'] / table['total']:.1f}% |")
    for n in names:
        missing = {fs: e for fs, e in stages[n]["interactions"]["by_factors"].items() if e["hit"] < e["total"]}
        if missing:
            lines += ["", f"<details><summary>{STAGES.get(n, n)}: {len(missing)} feature triples not fully covered"
                          "</summary>", "", "| features | hit / total | missing (first few) |", "|---|---|---|"]
            lines += [f"| {fs} | {e['hit']} / {e['total']} | {'; '.join(e['missing'])} |" for fs, e in missing.items()]
            lines += ["", "</details>"]
    for n in names:
        lost = stages[n].get("drawn_not_compared") or {}
        if lost.get("count"):
            lines += ["", f"{STAGES.get(n, n)}: {lost['count']} 3-way combinations drawn only by cases that compared "
                          "nothing (not counted as hit): " + "; ".join(f"{reason} ({count})" for reason, count in
                                                                      lost["by_reason"].items()), ""]
            lines += [f"- {entry['combo']}: {entry['reason']}" for entry in lost["combos"]]
    lines += ["", "Excluded from the totals (no valid case can have them):", ""]
    lines += [f"- {e['reason']}: {e['excluded']} combinations" for e in report.get("exclusions", [])]
    return lines


def _shrink_markdown(shrink: dict[str, Any] | None) -> list[str]:
    if not shrink:
        return []
    greedy = shrink["greedy"]
    text = (f"Shrinking: Hypothesis {shrink['hypothesis_seconds']} s, then {greedy['steps']} greedy candidates in "
            f"{greedy['seconds']} s (budget {shrink['budget']:g} s); first failing case: {shrink['first']}.")
    if shrink["stopped_at_budget"]:
        text += " **Shrinking stopped at the budget: the case below is the smallest found so far.**"
    return [text, ""]


def _compiler_hints(report: dict[str, Any]) -> list[str]:
    if report["environment"].get("backend") != "inductor":
        return []
    return ["", "If only target/compiled differs, localise the compiler pass: "
            "`TORCHDYNAMO_REPRO_AFTER=aot TORCHDYNAMO_REPRO_LEVEL=4 <replay command>` writes a minifier "
            "launcher, and `python -m torch._inductor.compiler_bisector run <replay command>` names the pass."]
