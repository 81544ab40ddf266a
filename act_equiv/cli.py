"""`act-equiv`: the regression gate on the command line.

Exit codes: 0 every property held; 1 a divergence or failure was found; 2 usage error (bad option, bad
target path) with a one-line message naming what was wrong and what is accepted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_DIVERGENCE, EXIT_USAGE = 0, 1, 2


def _gate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="concat",
                        help="MODULE:ATTR (ACTConfig -> nn.Module), or a built-in: concat, legacy, lerobot, "
                             "mutant:NAME (default: concat, act_equiv's own tensor-concat ACT)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--backend", default="aot_eager", choices=("inductor", "aot_eager", "eager", "none"),
                        help="torch.compile backend of the compiled form ('none' skips it)")
    parser.add_argument("--mode", default=None, choices=("default", "reduce-overhead", "max-autotune"),
                        help="torch.compile mode (inductor only)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--dynamic", default="auto", choices=("auto", "true", "false"))
    parser.add_argument("--autocast", default="none", choices=("none", "bfloat16", "float16"),
                        help="mixed precision: every form but the float64 reference under torch.autocast")
    parser.add_argument("--eager-tolerance", default="bitwise", choices=("bitwise", "rounding"),
                        help="target eager vs legacy: bitwise, or assert_close rounding for targets that "
                             "reorder floating point on purpose")


def _gate(args: argparse.Namespace, **overrides: Any) -> Any:
    from act_equiv.gate import Gate

    options = {
        "target": args.target, "device": args.device, "dtype": args.dtype,
        "backend": None if args.backend == "none" else args.backend, "mode": args.mode,
        "dynamic": {"auto": None, "true": True, "false": False}[args.dynamic],
        "eager_rounding": args.eager_tolerance == "rounding",
        "autocast": None if args.autocast == "none" else args.autocast,
    }
    return Gate(**{**options, **overrides})


def _check(args: argparse.Namespace) -> int:
    from hypothesis import settings

    from act_equiv import profiles, report
    from act_equiv import strategies as aes
    from act_equiv.gate import EAGER_SWEEP_FACTOR, SHRINK_BUDGET, check

    profiles.register()
    profile = args.profile or profiles.default_profile()
    if profile not in profiles.PROFILES:
        raise _UsageError(f"--profile {profile!r} is invalid: one of {sorted(profiles.PROFILES)}")
    shrink_budget = SHRINK_BUDGET if args.shrink_budget is None else args.shrink_budget
    if shrink_budget < 0:
        raise _UsageError(f"--shrink-budget {shrink_budget:g} is invalid: seconds >= 0")
    settings.load_profile(profile)
    gate = _gate(args)
    max_examples = args.max_examples or settings.get_profile(profile).max_examples
    run_id = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-") + f"{time.time_ns() % 10**6:06d}"
    directory = Path(args.report_dir) / run_id
    compiles = 0

    def progress(verdict: Any, done: int) -> None:
        nonlocal compiles
        if verdict.info["stage"] != "compiled":
            return
        compiles += verdict.info.get("compile", {}).get("frames_compiled", 0)
        status = "skip" if "skipped" in verdict.info else ("PASS" if verdict.passed else "FAIL")
        print(f"[{done}/{max_examples}] {status} {verdict.case.describe()} "
              f"({verdict.info['seconds']:.1f}s, graphs compiled so far: {compiles})", flush=True)

    print(f"act-equiv check: target={args.target} backend={args.backend} device={args.device} "
          f"dtype={args.dtype} autocast={args.autocast} profile={profile} max_examples={max_examples} "
          f"time_budget={args.time_budget or '-'} shrink_budget={shrink_budget:g}", flush=True)
    scope = {**profiles.scope(), "scales": aes.scales_for(gate.autocast)}
    stages = check(gate, scope, max_examples, args.time_budget, args.seed, profile, shrink_budget,
                   announce=lambda line: print(line, flush=True), on_verdict=progress)
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
           "profile": profile, "max_examples": max_examples, "eager_sweep_cases": EAGER_SWEEP_FACTOR * max_examples,
           "covering_rows": len(aes.covering_rows()), "time_budget": args.time_budget,
           "shrink_budget": shrink_budget,
           "seed": args.seed, "seconds": round(seconds, 1), "stopped_by": last.stopped_by}
    built = report.build(verdicts, gate.environment(), run, failures)
    path = report.write(built, directory)
    if args.junitxml:
        _junit(built, Path(args.junitxml))
    print(report.markdown(built) if failures else f"PASS: {len(verdicts)} cases, "
          f"{built['compile']['distinct_compiled_structures']} compiled structures, {seconds:.0f}s")
    print(f"report: {path}")
    return EXIT_DIVERGENCE if failures else EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from act_equiv.case import Case

    path = Path(args.report)
    if not path.is_file():
        raise _UsageError(f"{path}: no such report file (expected reports/<run-id>/report.json)")
    data = json.loads(path.read_text())
    failures = data.get("failures", [])
    if not 0 <= args.failure < len(failures):
        raise _UsageError(f"--failure {args.failure} is invalid: the report has {len(failures)} failure(s)")
    env = data["environment"]
    namespace = argparse.Namespace(
        target=env["target"], device=env["device"] if env["device"] == "cpu" else "cuda", dtype=env["dtype"],
        backend=env["backend"] or "none", mode=env["mode"],
        dynamic={None: "auto", True: "true", False: "false"}[env["dynamic"]],
        eager_tolerance=env["eager_tolerance"], autocast=env.get("autocast") or "none")
    verdict = _gate(namespace).verdict(Case.from_dict(failures[args.failure]["case"]))
    print(verdict.summary())
    return EXIT_OK if verdict.passed else EXIT_DIVERGENCE


def _junit(built: dict[str, Any], path: Path) -> None:
    """A JUnit XML file for CI systems: one testcase per case run, failures with their messages."""
    suite = ET.Element("testsuite", name="act-equiv", tests=str(built["result"]["cases"]),
                       failures=str(built["result"]["failures"]))
    for failure in built["failures"]:
        case = ET.SubElement(suite, "testcase", classname="act_equiv.check", name=failure["describe"])
        ET.SubElement(case, "failure", message=failure["replay"]).text = "\n".join(
            [f["message"] for f in failure["findings"]] + [c["message"] for c in failure["checks"] if not c["passed"]])
    passed = built["result"]["cases"] - len(built["failures"])
    ET.SubElement(suite, "testcase", classname="act_equiv.check", name=f"{passed} passing cases")
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="unicode", xml_declaration=True)


class _UsageError(Exception):
    pass


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="act-equiv", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="search for a divergence between the target and the legacy reference")
    _gate_options(check)
    check.add_argument("--max-examples", type=int, default=None, help="cases to draw (default: the profile's)")
    check.add_argument("--time-budget", type=float, default=None,
                       help="stop drawing new random cases after SECONDS (the covering array always runs whole)")
    check.add_argument("--shrink-budget", type=float, default=None,
                       help="seconds a found failure may spend shrinking; then the smallest case so far is reported "
                            "(default: act_equiv.gate.SHRINK_BUDGET, 60)")
    check.add_argument("--profile", default=None, help="hypothesis profile: ci, dev, thorough")
    check.add_argument("--seed", type=int, default=None, help="hypothesis seed (reproducible draws)")
    check.add_argument("--report-dir", default="reports", help="where reports/<run-id>/ is written")
    check.add_argument("--junitxml", default=None, help="also write a JUnit XML file here")
    check.set_defaults(func=_check)
    replay = sub.add_parser("replay", help="re-run one failure of a report and print its verdict")
    replay.add_argument("report", help="reports/<run-id>/report.json")
    replay.add_argument("--failure", type=int, default=0, help="which failure (default 0)")
    replay.set_defaults(func=_replay)
    from act_equiv import bench, mutation

    bench.add_parser(sub)
    mutation.add_parser(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from act_equiv.gate import UsageError

    try:
        return args.func(args)
    except (UsageError, _UsageError) as error:
        print(f"act-equiv {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
