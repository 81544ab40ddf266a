"""The mutation self-test (`act-equiv mutants`): how many of the catalogued refactoring bugs
(`act_equiv.targets.mutants`) does the gate kill, and how fast?

For every mutant, two test styles side by side:
- property-based: the stages of `act-equiv check` (`act_equiv.stages.check`: covering array, eager sweep, compiled
  search) with the profile's scope and example count, until the first divergence (shrunk, unless `--no-shrink`);
- a fixed-configuration baseline in the spirit of a classic parametrized test: VAE on/off x eval/train with one
  camera (3, 64, 64), state on, batch 2, no padding, eager, plus one compiled comparison (VAE on, eval).
  The baseline kills a mutant if any of its cases fails.
Both run in the dtype the mutant declares (float32, except `zero_latent_float32`, which a float32 run cannot see).

    act-equiv mutants --profile ci --time-budget 120

Writes reports/mutants-<timestamp>/mutants.json and summary.md; exits 0 when every mutant was killed by the
property-based run, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from act_equiv.cli import options
from act_equiv.settings import Search

if TYPE_CHECKING:  # the CLI imports this module to build its parser: torch loads only when a run starts
    from act_equiv.case import Case
    from act_equiv.gate import Gate
    from act_equiv.oracle.verdict import CaseVerdict

BASELINE_CONFIG: dict[str, Any] = {
    "vision_backbone": "tiny_resnet", "state_dim": 4, "camera_shapes": [(3, 64, 64)], "action_dim": 4,
    "chunk_size": 8, "n_action_steps": 8, "dim_model": 16, "n_heads": 2, "dim_feedforward": 32,
    "n_encoder_layers": 1, "n_decoder_layers": 1, "n_vae_encoder_layers": 1, "latent_dim": 4,
}
"""One camera, state on; LeRobot's defaults for everything a classic test would not think to vary (dropout 0.1)."""


def baseline_cases() -> list[tuple[str, Case, bool]]:
    """(label, case, compiled): VAE on/off x eval/train eager, and one compiled comparison (VAE on, eval)."""
    from act_equiv.case import BatchSpec, Case
    from act_equiv.config import ACTConfig

    batch = BatchSpec(batch_size=2, seed=0, scale=1.0, pad="none")
    cases = [(f"{'vae' if vae else 'no-vae'} {'train' if training else 'eval'}",
              Case(ACTConfig(**BASELINE_CONFIG, use_vae=vae), batch, training), False)
             for vae in (True, False) for training in (False, True)]
    return [*cases, ("vae eval compiled", Case(ACTConfig(**BASELINE_CONFIG, use_vae=True), batch, False), True)]


def failed_check(verdict: CaseVerdict) -> str | None:
    """The first failed check: a finding's name (`graph_break`, `compiled_raised`, ...), a class not accepted
    (`model: raised`, `policy: divergent`) or `pair:tensor`."""
    if verdict.findings:
        return verdict.findings[0].check
    refused = [f"{c.level}: {c.name}" for c in verdict.classes.values() if not c.accepted]
    if refused:
        return refused[0]
    failed = [check for check in verdict.checks if not check.passed]
    return f"{failed[0].pair}:{failed[0].tensor}" if failed else None


def _gate(name: str, backend: str | None, explain: bool, strict: bool = False) -> Gate:
    """`Gate` for `mutant:<name>` in the dtype the mutant needs; `explain=False` skips the runner's per-structure
    `torch._dynamo.explain` pass, which the oracle reports but never judges (~5 s per structure on 2 cores). Its
    training trajectories are eager: no mutant is a compiled-training bug, and compiling a structure's training costs
    about 40 s (tests/test_training.py kills compiled-training bugs)."""
    from act_equiv.gate import Gate
    from act_equiv.targets.mutants import MUTANTS

    mutant = MUTANTS[name]
    return Gate(target=mutant.target, backend=backend, dtype=mutant.dtype, explain=explain, strict=strict,
                trained_structures=0)


def property_run(name: str, how: Search, *, backend: str | None = "aot_eager", explain: bool = False,
                 strict: bool = False) -> dict[str, Any]:
    """Run `act-equiv check`'s stages (`act_equiv.stages.check`) against `mutant:<name>`, searched as `how` says,
    with its profile's scope.

    By default a rounding-only difference from the reference passes (float64 runs of both sides decide), so a killed
    mutant is wrong beyond rounding; `strict=True` fails any difference. A shrink budget of 0 reports the first
    failing case.
    """
    from act_equiv import profiles
    from act_equiv import strategies as aes
    from act_equiv.stages import check

    first: dict[str, Any] = {}
    judged = 0
    start = time.perf_counter()

    def on_verdict(verdict: CaseVerdict, done: int) -> None:
        nonlocal judged
        judged += 1
        if not verdict.passed and not first:
            first.update(examples=judged, seconds=time.perf_counter() - start, check=failed_check(verdict),
                         case=verdict.case.describe(), stage=verdict.info["stage"])

    with _gate(name, backend, explain, strict) as gate:
        stages = check(gate, {**profiles.scope(how.profile), **aes.magnitudes_for(None)}, how, on_verdict=on_verdict)
    failure = stages[-1].failure
    return {
        "killed": failure is not None,
        "examples": first.get("examples"),
        "examples_run": judged,
        "seconds_to_kill": round(first["seconds"], 2) if first else None,
        "seconds": round(sum(stage.seconds for stage in stages), 2),
        "stopped_by": stages[-1].stopped_by,
        "stage": first.get("stage"),
        "first_check": first.get("check"),
        "first_case": first.get("case"),
        "check": failed_check(failure) if failure else None,
        "shrunk": failure.case.to_dict() if failure else None,
        "shrunk_describe": failure.case.describe() if failure else None,
        "failures": failure.failures[:3] if failure else [],
    }


def baseline_run(name: str, backend: str | None = "aot_eager", explain: bool = False,
                 strict: bool = False) -> dict[str, Any]:
    """Run the fixed baseline cases against `mutant:<name>` (the compiled one only when `backend` is set)."""
    start = time.perf_counter()
    cases = []
    with contextlib.ExitStack() as opened:
        gates = {compiled: opened.enter_context(_gate(name, backend if compiled else None, explain, strict))
                 for compiled in ((False, True) if backend is not None else (False,))}
        for label, case, compiled in baseline_cases():
            if compiled in gates:
                verdict = gates[compiled].verdict(case)
                cases.append({"case": label, "passed": verdict.passed, "check": failed_check(verdict)})
    return {"killed": any(not c["passed"] for c in cases), "cases": cases,
            "seconds": round(time.perf_counter() - start, 2)}


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(results)
    kill_times = [r["property"]["seconds_to_kill"] for r in results if r["property"]["killed"]]
    kill_examples = [r["property"]["examples"] for r in results if r["property"]["killed"]]
    property_kills = len(kill_times)
    baseline_kills = sum(r["baseline"]["killed"] for r in results if r["baseline"] is not None)
    baseline_n = sum(r["baseline"] is not None for r in results)
    return {
        "mutants": n,
        "property_killed": property_kills,
        "property_kill_rate": property_kills / n if n else 0.0,
        "median_seconds_to_kill": round(statistics.median(kill_times), 2) if kill_times else None,
        "median_examples_to_kill": statistics.median(kill_examples) if kill_examples else None,
        "baseline_killed": baseline_kills,
        "baseline_kill_rate": baseline_kills / baseline_n if baseline_n else None,
    }


def markdown(report: dict[str, Any]) -> str:
    s, run = report["summary"], report["run"]
    pct = "n/a" if s["baseline_kill_rate"] is None else f"{s['baseline_kill_rate']:.0%}"
    lines = [
        "# Mutant run",
        "",
        f"profile `{run['profile']}`, backend `{run['backend']}`, max examples {run['max_examples']}, time budget "
        f"{run['time_budget'] or '-'} s per mutant, shrink {run['shrink']}, "
        f"{'strict' if run['strict'] else 'rounding accepted'}, torch {run['torch']}, "
        f"{run['threads']} thread(s), {run['seconds']:.0f} s in all.",
        "",
        f"- property-based: **{s['property_killed']}/{s['mutants']} killed ({s['property_kill_rate']:.0%})**, "
        f"median {s['median_seconds_to_kill']} s and {s['median_examples_to_kill']} example(s) to the first kill",
        f"- fixed-config baseline: **{s['baseline_killed']}/{s['mutants']} killed ({pct})**",
        "",
        "| mutant | needs | property: killed | examples | seconds | check | baseline: killed |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["mutants"]:
        p, b = r["property"], r["baseline"]
        baseline = "-" if b is None else ("yes" if b["killed"] else "**no**")
        lines.append(f"| `{r['name']}` | {r['needs']} | {'yes' if p['killed'] else '**no**'} | "
                     f"{p['examples'] or '-'} | {p['seconds_to_kill'] if p['killed'] else '-'} | "
                     f"{p['check'] or '-'} | {baseline} |")
    lines += ["", "## Bugs and shrunk counterexamples", ""]
    for r in report["mutants"]:
        p = r["property"]
        lines.append(f"- `{r['name']}`: {r['description']}  \n  "
                     + (f"shrunk to: {p['shrunk_describe']} ({_config_brief(p['shrunk'])})"
                        if p["killed"] else f"survived {p['examples_run']} examples ({p['stopped_by']})"))
    return "\n".join(lines) + "\n"


def _config_brief(case: dict[str, Any]) -> str:
    c, b = case["config"], case["batch"]
    return (f"cameras {[list(s[1:]) for s in c['camera_shapes']]}, chunk {c['chunk_size']}, dropout "
            f"{c['dropout']}, pad {b['pad']}, scale {b['scale']:g}")


def run(args: argparse.Namespace) -> int:
    """`act-equiv mutants`: 0 if the property-based run killed every mutant, else 1."""
    import torch

    from act_equiv.errors import UsageError
    from act_equiv.targets.mutants import MUTANTS

    how = Search(**options.search_keywords(vars(args)), **({"shrink_budget": 0.0} if args.no_shrink else {}))
    names = args.only or list(MUTANTS)
    unknown = sorted(set(names) - set(MUTANTS))
    if unknown:
        raise UsageError(f"--only {unknown}: no such mutant; one of {sorted(MUTANTS)}")
    gate = options.gate_keywords(vars(args))
    backend, strict = gate["backend"], gate["strict"]
    start = time.perf_counter()
    results = []
    for i, name in enumerate(names, 1):
        mutant = MUTANTS[name]
        print(f"[{i}/{len(names)}] {name}: {mutant.description}", flush=True)
        prop = property_run(name, how, backend=backend, explain=args.explain, strict=strict)
        base = None if args.no_baseline else baseline_run(name, backend, args.explain, strict)
        if prop["killed"]:
            print(f"    killed in {prop['seconds_to_kill']} s after {prop['examples']} example(s) "
                  f"[{prop['check']}]; shrunk to: {prop['shrunk_describe']} ({prop['seconds']} s in all)", flush=True)
        else:
            print(f"    SURVIVED {prop['examples_run']} examples ({prop['stopped_by']}, {prop['seconds']} s)",
                  flush=True)
        if base is not None:
            print(f"    baseline: {'killed' if base['killed'] else 'survived'} ({base['seconds']} s)", flush=True)
        results.append({**dataclasses.asdict(mutant), "cls": mutant.cls.__name__, "property": prop, "baseline": base})
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    report = {
        "run": {"profile": how.profile, "backend": args.backend, "time_budget": how.time_budget,
                "max_examples": how.max_examples, "seed": how.seed, "shrink": not args.no_shrink,
                "strict": args.strict,
                "torch": torch.__version__, "threads": torch.get_num_threads(),
                "seconds": round(time.perf_counter() - start, 1), "timestamp": stamp,
                "baseline_cases": [label for label, _, _ in baseline_cases()]},
        "summary": summarize(results),
        "mutants": results,
    }
    directory = Path(args.report_dir) / f"mutants-{stamp}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "mutants.json").write_text(json.dumps(report, indent=2, default=str))
    summary = markdown(report)
    (directory / "summary.md").write_text(summary)
    print(summary)
    print(f"report: {directory}")
    return 0 if report["summary"]["property_killed"] == len(results) else 1


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `mutants` to the CLI's subcommands (`func=run`)."""
    parser = subparsers.add_parser("mutants", help="run the gate against every catalogued mutant and report kills")
    options.add_arguments(parser, options.select("backend", "strict", "profile", "max_examples", "time_budget",
                                                 "seed", "report_dir", profile={"default": "ci", "unset": ""}))
    parser.add_argument("--only", action="append", default=None, metavar="NAME", help="run this mutant (repeatable)")
    parser.add_argument("--no-shrink", action="store_true", help="stop at the first failing example")
    parser.add_argument("--no-baseline", action="store_true", help="skip the fixed-configuration baseline")
    parser.add_argument("--explain", action="store_true",
                        help="keep the runner's per-structure torch._dynamo.explain pass (reported only; slower)")
    parser.set_defaults(func=run)
    return parser
