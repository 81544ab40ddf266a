"""`act-equiv`: the regression gate on the command line.

Exit codes: 0 every property held; 1 a divergence or failure was found; 2 usage error (bad option, bad
target path) with a one-line message naming what was wrong and what is accepted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from act_equiv.cli import options
from act_equiv.errors import UsageError

if TYPE_CHECKING:  # torch loads only when a command runs
    from act_equiv.gate import Gate

EXIT_OK, EXIT_DIVERGENCE, EXIT_USAGE = 0, 1, 2
TORCH_LOG = "torch.log"
"""The file in a check's report directory that takes what torch (and anything else) writes to stderr."""
STEP_SUMMARY = "GITHUB_STEP_SUMMARY"
"""Where a GitHub Actions job collects Markdown for its summary page: a check appends its verdict there."""


def _gate(values: dict[str, Any], record_findings: bool = False) -> Gate:
    """The `Gate` of these option values (by option name)."""
    from act_equiv.gate import Gate

    return Gate(**options.gate_keywords(values), record_findings=record_findings)


def _check(args: argparse.Namespace) -> int:
    from hypothesis import settings

    from act_equiv import profiles, report
    from act_equiv import strategies as aes
    from act_equiv.settings import Search
    from act_equiv.stages import EAGER_SWEEP_FACTOR, check

    how = Search(**options.search_keywords(vars(args)))
    profiles.register()
    settings.load_profile(how.profile)
    run_id = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-") + f"{time.time_ns() % 10**6:06d}"
    directory = Path(args.report_dir) / run_id
    # Until the report directory exists, stderr goes to a temporary file (a usage error leaves no directory).
    log = Path(tempfile.mkstemp(prefix="act-equiv-", suffix=".log")[1])
    opening = time.perf_counter()
    try:
        with stderr_to(log):
            gate = _gate(vars(args), record_findings=args.update_baseline is not None)
    except BaseException:
        log.unlink()
        raise
    open_seconds = time.perf_counter() - opening
    compiles = compared = 0

    def progress(verdict: Any, done: int) -> None:
        nonlocal compiles, compared
        if verdict.info["stage"] != "compiled":
            return
        compiles += verdict.info.get("compile", {}).get("frames_compiled", 0)
        compared += bool(verdict.compared_forms)
        status = ("FAIL" if not verdict.passed else f"PASS ({', '.join(verdict.compared_forms)})"
                  if verdict.compared_forms else "skip" if "skipped" in verdict.info
                  else "not compared (does not count)")
        print(f"[{compared if verdict.compared_forms else '-'}/{how.max_examples}] {status} {verdict.case.describe()} "
              f"({verdict.info['seconds']:.1f}s, graphs compiled so far: {compiles})", flush=True)

    print(f"act-equiv check: reference={args.reference} target={args.target} backend={args.backend} "
          f"device={args.device} dtype={args.dtype} autocast={args.autocast} profile={how.profile} "
          f"max_examples={how.max_examples} time_budget={how.time_budget or '-'} shrink_budget={how.shrink_budget:g}"
          + (" strict" if args.strict else "") + f"; {gate.forms_line()}", flush=True)
    for role in ("reference", "target"):
        side = gate.runner.reference if role == "reference" else gate.runner.target
        print(f"{role}: " + ", ".join(f"{key}={value}" for key, value in side.environment().items()), flush=True)
    scope = {**profiles.scope(), **aes.magnitudes_for(gate.settings.autocast)}
    with stderr_to(log), gate:
        stages = check(gate, scope, how, announce=lambda line: print(line, flush=True), on_verdict=progress)
        environment = gate.environment()
    last = stages[-1]
    seconds = sum(stage.seconds for stage in stages)
    failures = []
    if last.failure is not None:
        failure = last.failure.to_dict()
        failure["replay"] = f"act-equiv replay {directory / 'report.json'} --failure 0"
        failure["shrink"] = last.shrink
        failures.append(failure)
    verdicts = [v.to_dict() for stage in stages for v in stage.verdicts]
    run = {"kind": "check", "id": run_id, "command": shlex.join(["act-equiv", *sys.argv[1:]]),
           "profile": how.profile, "max_examples": how.max_examples,
           "eager_sweep_cases": EAGER_SWEEP_FACTOR * how.max_examples, "covering_rows": len(aes.covering_rows()),
           "time_budget": how.time_budget, "shrink_budget": how.shrink_budget,
           "forms_requested": list(gate.settings.forms), "seed": how.seed, "seconds": round(seconds, 1),
           "stopped_by": last.stopped_by}
    stale = gate.known.stale(verdicts) if gate.known is not None and not failures else None
    built = report.build(verdicts, environment, run, failures, stale)
    run["split"] = time_split(built, open_seconds, seconds, last.shrink)
    path = report.write(built, directory)
    if args.junitxml:
        report.junit(built, Path(args.junitxml))
    for line in report.console(built):
        print(line)
    split = run["split"]
    print(f"time: {split['open']:.0f}s opening the sides, {split['compile']:.0f}s compiling and exporting, "
          f"{split['cases']:.0f}s running cases, {split['shrink']:.0f}s shrinking")
    print(f"report: {path.with_name('summary.md')}")
    logged = log.read_bytes().count(b"\n")
    if logged:
        log = Path(shutil.move(log, directory / TORCH_LOG))
        print(f"torch's own output (logging, graph dumps, warnings; workers too): {log} ({logged} lines)")
    else:
        log.unlink()
    summary_page = os.environ.get(STEP_SUMMARY)
    if summary_page:
        with open(summary_page, "a") as page:
            page.write(report.step_summary(built, failures[0]["replay"] if failures else None))
    if args.update_baseline is not None:
        from act_equiv import baseline

        baseline.write(args.update_baseline, built["result"]["known"], run)
        print(f"baseline: {len(built['result']['known'])} finding(s) written to {args.update_baseline}")
        return EXIT_OK if built["result"]["nothing_compared"] is None else EXIT_DIVERGENCE
    if failures:
        print(f"replay: {failures[0]['replay']}")
    return EXIT_OK if built["result"]["passed"] else EXIT_DIVERGENCE


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Everything written to this process's stderr (file descriptor 2: torch's logging, exporters' graph dumps,
    warnings), and by the workers started meanwhile (they inherit it), goes to the end of `path` instead: the
    console keeps the verdict."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def time_split(built: dict[str, Any], open_seconds: float, seconds: float, shrink: dict[str, Any] | None
               ) -> dict[str, float]:
    """Where a check's time went: opening the sides (worker start and imports), compiling and exporting (the calls
    that compiled, and exports, wherever the target ran), running cases (the rest of the stages) and shrinking."""
    compiling = built["compile"]["compile_seconds_total"] + sum(
        form["export_seconds_total"] for form in built["deployed"].values())
    shrinking = 0.0 if shrink is None else shrink["hypothesis_seconds"] + shrink["greedy"]["seconds"]
    return {"open": round(open_seconds, 1), "compile": round(compiling, 1),
            "cases": round(max(0.0, seconds - compiling - shrinking), 1), "shrink": round(shrinking, 1)}


def _replay(args: argparse.Namespace) -> int:
    from act_equiv.case import Case

    path = Path(args.report)
    if not path.is_file():
        raise UsageError(f"{path}: no such report file (expected reports/<run-id>/report.json)")
    data = json.loads(path.read_text())
    failures = data.get("failures", [])
    if not 0 <= args.failure < len(failures):
        raise UsageError(f"--failure {args.failure} is invalid: the report has {len(failures)} failure(s)")
    env = data["environment"]  # the gate's settings by option name, but `device` is "cpu" or the GPU's name
    values = {**options.option_values(env), "device": "cpu" if env["device"] == "cpu" else "cuda",
              **{name: getattr(args, name) for name in options.SIDES if getattr(args, name) is not None}}
    with _gate(values) as gate:
        for line in replay_sides(env.get("sides", {}), gate):
            print(line, flush=True)
        verdict = gate.verdict(Case.from_dict(failures[args.failure]["case"]))
    print(verdict.summary())
    return EXIT_OK if verdict.passed else EXIT_DIVERGENCE


def replay_sides(recorded: dict[str, dict[str, Any]], gate: Gate) -> list[str]:
    """What a replay compares, a line per side (spec, commit or WORKTREE content), and a warning where a side of the
    report's spec now holds other code than the report recorded (a moved branch, an edited WORKTREE)."""
    lines = []
    for role in ("reference", "target"):
        side = (gate.runner.reference if role == "reference" else gate.runner.target).environment()
        content = f", content {side['content']}" if "content" in side else ""
        lines.append(f"{role}: {side['spec']} ({side['process']}{content})")
        before = recorded.get(role, {})
        if before.get("spec") == side["spec"] and before.get("content", side.get("content")) != side.get("content"):
            lines.append(f"warning: {role} {side['spec']} now holds other code than the report recorded (content "
                         f"{before['content']} then, {side['content']} now): this replay runs the code as it is now")
    return lines


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="act-equiv", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="search for a divergence between the target and the legacy reference")
    options.add_arguments(check, (*options.GATE, *options.SEARCH, options.REPORT_DIR))
    check.add_argument("--junitxml", default=None, help="also write a JUnit XML file here")
    check.add_argument("--update-baseline", default=None, metavar="FILE",
                       help="accept every failure, search on, and write them all to FILE as a known-findings "
                            "baseline for --baseline (exit 0 once written)")
    check.set_defaults(func=_check)
    replay = sub.add_parser("replay", help="re-run one failure of a report and print its verdict")
    replay.add_argument("report", help="reports/<run-id>/report.json")
    replay.add_argument("--failure", type=int, default=0, help="which failure (default 0)")
    options.add_arguments(replay, options.select(*options.SIDES, **{name: {"default": None, "unset": "the report's"}
                                                                   for name in options.SIDES}))
    replay.set_defaults(func=_replay)
    from act_equiv.cli import bench, selftest

    bench.add_parser(sub)
    selftest.add_parser(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as error:
        print(f"act-equiv {args.command}: {error.for_flags('--')}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
