"""Reports: verdicts (as dicts) in, `report.json` and `summary.md` out. Renders; never judges.

Schema `act_equiv.report/1` is documented in reports/README.md.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA = "act_equiv.report/1"
MARKDOWN_FAILURES = 10
"""summary.md renders at most this many failures; report.json keeps them all."""


def coverage(verdicts: Iterable[dict]) -> dict[str, dict[str, int]]:
    """How many cases per feature value, so a reader sees what the run actually exercised."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for v in verdicts:
        case = v["case"]
        config = case["config"]
        counts["use_vae"][str(config["use_vae"])] += 1
        counts["cameras"][str(len(config["camera_shapes"]))] += 1
        counts["different_camera_resolutions"][
            str(len({tuple(s) for s in config["camera_shapes"]}) > 1)] += 1
        counts["state"][str(config["state_dim"] is not None)] += 1
        counts["env"][str(config["env_state_dim"] is not None)] += 1
        counts["batch_size"][str(case["batch"]["batch_size"])] += 1
        counts["mode"]["train" if case["training"] else "eval"] += 1
        counts["pad"][case["batch"]["pad"]] += 1
        counts["scale"][f"{case['batch']['scale']:g}"] += 1
        counts["dropout"][str(config["dropout"] > 0)] += 1
        counts["backbone"][config["vision_backbone"]] += 1
    return {name: dict(sorted(counter.items())) for name, counter in sorted(counts.items())}


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
            if check["kind"] in ("close", "mismatch"):
                if check["max_abs"] > entry["max_abs"]:
                    entry["max_abs"], entry["worst_tensor"] = check["max_abs"], check["tensor"]
                entry["max_rel"] = max(entry["max_rel"], check["max_rel"])
            entry["min_margin"] = min(entry["min_margin"], check["margin"])
            tol = check["tolerance"]
            entry["tolerance"].add("bitwise" if tol["rtol"] == tol["atol"] == 0
                                   else f"rtol={tol['rtol']:g}, atol={tol['atol']:g}")
    for entry in pairs.values():
        entry["tolerance"] = sorted(entry["tolerance"])
    return dict(sorted(pairs.items()))


def compile_summary(verdicts: list[dict]) -> dict[str, Any]:
    compiled = [v for v in verdicts if "compile" in v["info"]]
    seconds = [v["info"]["compile"]["compile_seconds"] for v in compiled]
    structures = {(json.dumps(v["case"]["config"], sort_keys=True), v["case"]["training"]) for v in compiled}
    explains: dict[str, Counter] = defaultdict(Counter)
    reasons: set[str] = set()
    for v in verdicts:
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
        "graph_breaks_compiled": sum(v["info"]["compile"]["graph_breaks"] for v in compiled),
        "explain": {form: dict(counter) for form, counter in explains.items()},
        "break_reasons": sorted(reasons),
    }


def build(verdicts: list[dict], environment: dict[str, Any], run: dict[str, Any],
          failures: list[dict] | None = None) -> dict[str, Any]:
    failures = failures if failures is not None else [v for v in verdicts if not v["passed"]]
    return {
        "schema": SCHEMA,
        "run": run,
        "environment": environment,
        "result": {"passed": not failures, "cases": len(verdicts),
                   "skipped": sum("skipped" in v["info"] for v in verdicts), "failures": len(failures)},
        "coverage": coverage(verdicts),
        "pairs": pair_errors(verdicts),
        "compile": compile_summary(verdicts),
        "failures": failures,
    }


def write(report: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (directory / "summary.md").write_text(markdown(report))
    return directory / "report.json"


def markdown(report: dict[str, Any]) -> str:
    result, env, comp = report["result"], report["environment"], report["compile"]
    lines = [
        f"# act_equiv {report['run'].get('kind', 'check')}: {'PASS' if result['passed'] else 'FAIL'}",
        "",
        f"`{report['run'].get('command', '')}`",
        "",
        "| " + " | ".join(env) + " |",
        "|" + "---|" * len(env),
        "| " + " | ".join(str(v) for v in env.values()) + " |",
        "",
        f"Cases: {result['cases']} ({result['skipped']} skipped), failures: {result['failures']}, "
        f"seconds: {report['run'].get('seconds', '?')}, stopped by: {report['run'].get('stopped_by', '-')}",
        "",
        "## Coverage (cases per feature value)",
        "",
    ]
    lines += [f"- {name}: " + ", ".join(f"{k}: {n}" for k, n in values.items())
              for name, values in report["coverage"].items()]
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
              f"- eager forms traced by torch._dynamo.explain: {comp['explain'] or 'not measured in this run'}"]
    lines += [f"  - break reason: {reason}" for reason in comp["break_reasons"]]
    failures = report["failures"]
    if len(failures) > MARKDOWN_FAILURES:
        lines += ["", f"{len(failures)} failing verdicts (a pytest session records every shrinking step); the first "
                      f"{MARKDOWN_FAILURES} follow, all are in report.json."]
    for index, failure in enumerate(failures[:MARKDOWN_FAILURES]):
        lines += ["", f"## Failure {index}: {failure['describe']}", "",
                  f"Replay: `{failure.get('replay', '')}`", "", "```"]
        lines += [f"[{f['check']}] {f['message']}" for f in failure["findings"]]
        lines += [f"[{c['pair']}] {c['message']}" for c in failure["checks"] if not c["passed"]][:6]
        lines += ["```", "", "Shrunk case:", "", "```json", json.dumps(failure["case"], indent=1), "```"]
        lines += _compiler_hints(report)
    return "\n".join(lines) + "\n"


def _compiler_hints(report: dict[str, Any]) -> list[str]:
    if report["environment"].get("backend") != "inductor":
        return []
    return ["", "If only target/compiled differs, localise the compiler pass: "
            "`TORCHDYNAMO_REPRO_AFTER=aot TORCHDYNAMO_REPRO_LEVEL=4 <replay command>` writes a minifier "
            "launcher, and `python -m torch._inductor.compiler_bisector run <replay command>` names the pass."]
