"""`act-equiv bench`: what torch.compile really does for ACT, measured, never assumed.

Times legacy eager, concat eager, legacy compiled and concat compiled (with `--training`, also the concat model's
whole training step compiled) in one process, calls interleaved round-robin (so drift in machine load hits every
form alike), warm-up excluded, and reports medians, spread, ratios to legacy eager, throughput, compile time and
graph breaks per form. `--forms` adds the deployment forms of the concat model (inference: torch.export's module,
onnxruntime's CPU provider, an AOTInductor package), timed in the same rounds; their "compile s" is the export's.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from act_equiv import compat, plots
from act_equiv import forms as table
from act_equiv.case import BatchSpec, Case, make_batch
from act_equiv.cli import options
from act_equiv.config import ACTConfig
from act_equiv.errors import UsageError
from act_equiv.gate import check_supported
from act_equiv.models import ACT, ACTPolicy, LegacyACT, build
from act_equiv.oracle import trajectory
from act_equiv.oracle.compare import compare
from act_equiv.oracle.tolerance import EXACT
from act_equiv.run import numerics
from act_equiv.run import training as training_step
from act_equiv.run.compiled import CompiledForm, counting_backend
from act_equiv.run.deployed import DeploymentModule, deploy, deployment_inputs
from act_equiv.run.environment import environment
from act_equiv.run.inputs import batch_at
from act_equiv.settings import BACKENDS, Bench, Settings

# ACTConfig's own defaults are LeRobot's; presets set the features and, for `small`, the model size.
PRESETS: dict[str, dict[str, Any]] = {
    # LeRobot's default ACT (resnet18, dim 512, ff 3200, 4+1 layers, 4 VAE layers, chunk 100), PushT-sized I/O.
    "default": {"state_dim": 2, "action_dim": 2, "camera_shapes": [(3, 96, 96)]},
    # The same model with ALOHA's 480x640 top camera and 14-D state/action.
    "aloha": {"state_dim": 14, "action_dim": 14, "camera_shapes": [(3, 480, 640)]},
    # A small model for quick runs: tiny backbone, two cameras.
    "small": {"state_dim": 6, "env_state_dim": 4, "action_dim": 6, "camera_shapes": [(3, 64, 64), (3, 64, 96)],
              "vision_backbone": "tiny_resnet", "dim_model": 64, "n_heads": 4, "dim_feedforward": 128,
              "n_encoder_layers": 2, "n_vae_encoder_layers": 2, "chunk_size": 20, "n_action_steps": 20,
              "latent_dim": 16},
}
ROWS = ("legacy eager", "concat eager", "legacy compiled", "concat compiled")
"""The timed rows beside the deployment forms' (`DEPLOYED_ROWS`) and the whole training step (`WHOLE_STEP`)."""
WHOLE_STEP = "concat compiled step"
"""The training-only row: the whole training step compiled (`_Step`)."""


def add_parser(subparsers: Any) -> None:
    bench = subparsers.add_parser("bench", help="time legacy/concat, eager/compiled, in one interleaved run")
    compiled_only = {"default": "inductor", "choices": BACKENDS,
                     "help": "torch.compile backend of the compiled forms"}
    options.add_arguments(bench, options.select("device", "backend", "mode", "forms", "onnx_exporter", "train_steps",
                                                "report_dir", backend=compiled_only, train_steps={"default": 3}))
    bench.add_argument("--batch-size", type=int, default=8)
    bench.add_argument("--num-runs", type=int, default=20, help="timed calls per form")
    bench.add_argument("--warmup", type=int, default=3, help="untimed calls per form (the first one compiles)")
    bench.add_argument("--config", default="default", choices=sorted(PRESETS), help="model preset")
    bench.add_argument("--training", action="store_true",
                       help="time training steps (forward, backward, clipping, AdamW step), the whole step compiled "
                            "too")
    bench.set_defaults(func=run)


DEPLOYED_ROWS = {"exported": "concat exported", "onnx": "concat onnxruntime", "aoti": "concat aoti"}


class _Deployed:
    """A deployment form's inference call on the flat inputs (exported at batch >= 2, see `act_equiv.compat`)."""

    def __init__(self, form: str, model: nn.Module, config: ACTConfig, batch: dict[str, Any], batch_size: int,
                 device: str, onnx_exporter: str) -> None:
        module = DeploymentModule(config, model.eval())
        example = deployment_inputs(config, make_batch(config, BatchSpec(max(batch_size, 2), seed=0), device))
        self.form = deploy(form, module, example, onnx_exporter)
        self.inputs = deployment_inputs(config, batch)

    def __call__(self) -> None:
        with torch.no_grad():
            self.form(self.inputs)


class _Step:
    """One form's unit of work: an inference forward, or a full training step as LeRobot's `update_policy` takes it
    (`act_equiv.run.training.update`: forward and loss, backward, clipping, AdamW step). `compile_with` compiles the
    model (in training, the policy's inner model in place, as LeRobot #4607 compiles `policy.model`); with
    `whole_step`, the training step itself (forward, backward, clipping and optimizer step, dynamo splitting it at
    the backward). Compiled training counts its graphs through the counting backend, the proof that they ran."""

    def __init__(self, model: nn.Module, config: ACTConfig, batch: dict[str, Any], training: bool,
                 compile_with: dict[str, Any] | None, whole_step: bool = False) -> None:
        self.policy = ACTPolicy(config, model)
        self.training = training
        self.batch = batch
        self.model = model.train(training)
        self.counting = None
        self.form = CompiledForm(model, fullgraph=True, **compile_with) if compile_with and not training else model
        if not training:
            return
        self.optimizer, self.clip = training_step.optimizer_for(self.policy, config)
        self.update = self._update
        if compile_with:
            self.counting = counting_backend(compile_with["backend"], compile_with["mode"])
            if whole_step:
                self.update = torch.compile(self._update, backend=self.counting, fullgraph=False)
            else:
                model.forward = torch.compile(model.forward, backend=self.counting, fullgraph=True)

    def _update(self, batch: dict[str, Any]) -> torch.Tensor:
        return training_step.update(self.policy, self.optimizer, batch, self.clip, contextlib.nullcontext)

    def __call__(self) -> None:
        if not self.training:
            with torch.no_grad():
                self.form(self.batch)
            return
        self.update(self.batch)


def _timed(fn: Callable[[], None], device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_settings(args: argparse.Namespace) -> tuple[Settings, Bench]:
    """The bench's settings, the gate's and its own, each validated once (`act_equiv.settings`), and what this torch
    can run of them."""
    settings = Settings(device=args.device, backend=args.backend, mode=args.mode, forms=args.forms,
                        onnx_exporter=args.onnx_exporter, train_steps=args.train_steps)
    counts = Bench(batch_size=args.batch_size, num_runs=args.num_runs, warmup=args.warmup, training=args.training,
                   forms=settings.forms)
    check_supported(settings)
    return settings, counts


def measure(args: argparse.Namespace, progress: Callable[[str], None] = print) -> dict[str, Any]:
    settings, counts = bench_settings(args)
    forms, deployed = settings.forms, settings.deployed_forms
    for form in forms:
        if table.missing(form) is not None:
            raise UsageError(f"--forms {form}: {table.missing(form)}", "forms")
    config = ACTConfig(**PRESETS[args.config])
    batch = make_batch(config, BatchSpec(counts.batch_size, seed=0), settings.device)
    compile_with = {"backend": settings.backend, "mode": settings.mode}
    steps: dict[str, _Step | _Deployed] = {}
    explained: dict[str, Any] = {}
    compile_seconds: dict[str, float] = {}
    for name in ROWS if "compiled" in forms else [row for row in ROWS if row.endswith("eager")]:
        form_cls = LegacyACT if name.startswith("legacy") else ACT
        model = build(config, 0, form_cls).to(settings.device)
        if name.endswith("eager"):
            probe = model.train(counts.training)
            with torch.set_grad_enabled(counts.training):
                explained[name.split()[0]] = compat.explain(probe, batch)
        steps[name] = _Step(model, config, batch, counts.training, compile_with if "compiled" in name else None)
    if counts.training and "compiled" in forms:
        steps[WHOLE_STEP] = _Step(build(config, 0, ACT).to(settings.device), config, batch, True, compile_with,
                                  whole_step=True)
    for form in deployed:
        progress(f"exporting {DEPLOYED_ROWS[form]}")
        step = _Deployed(form, build(config, 0, ACT).to(settings.device), config, batch, counts.batch_size,
                         settings.device, settings.onnx_exporter)
        steps[DEPLOYED_ROWS[form]] = step
        compile_seconds[DEPLOYED_ROWS[form]] = step.form.export_seconds
    compat.reset()
    for name, step in steps.items():
        progress(f"warm-up {name} ({counts.warmup} calls{', compiling' if 'compiled' in name else ''})")
        with compat.quiet_dynamo():  # the compiled optimizer step's note that it ignores the profiler
            first = _timed(step, settings.device)
        if "compiled" in name:
            compile_seconds[name] = first
        for _ in range(counts.warmup - 1):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for index in range(counts.num_runs):
        for name, step in steps.items():
            times[name].append(_timed(step, settings.device))
        if (index + 1) % max(1, counts.num_runs // 5) == 0:
            progress(f"timed {index + 1}/{counts.num_runs} rounds")
    for name, step in steps.items():
        stats = step.form.stats if isinstance(step.form, CompiledForm) else None
        if stats is not None and (stats.fell_back_to_eager or stats.frames_compiled == 0):
            raise RuntimeError(f"{name}: compiled code did not run ({stats.reason})")
    for name, step in steps.items():  # each training row's own graphs: rows share a counting backend
        counting = getattr(step, "counting", None)
        if counting is not None:
            before = counting.graph_runs
            step()
            if counting.graph_runs == before:
                raise RuntimeError(f"{name}: compiled code did not run (no compiled graph executed)")
    result = _summarise(args, counts, config, times, compile_seconds, explained, steps)
    if counts.training and "compiled" in forms and settings.train_steps:
        progress(f"training error: {settings.train_steps} steps of each compiled training against eager and float64")
        result["training_error"] = _training_error(counts, config, settings)
    return result


def _training_error(counts: Bench, config: ACTConfig, settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Per compiled training form, the per-step difference from eager training beside the float64 envelope: the
    concat model trained `--train-steps` steps (`act_equiv.run.training`) eager, in float64 with the float32 run's
    draws, with its model compiled and with the whole step compiled."""
    case = Case(config, BatchSpec(counts.batch_size, seed=0), training=True)
    policy = ACTPolicy(config, build(config, case.weight_seed, ACT, case.weight_scale).to(settings.device))
    batches = training_step.batches(case, settings, settings.train_steps)
    observation = batch_at(settings, case, counts.batch_size)

    def trained(form: training_step.Trained, float64: training_step.Draws | None = None) -> dict[str, Any]:
        with numerics.pinned(settings.device):
            return training_step.train(policy, config, case, settings, batches, observation, form, float64)[0]

    eager, envelope = trained("eager"), trained("eager", "float32")
    return {f"concat {form}": trajectory.steps(eager, compiled, envelope, compare(eager, compiled, form, EXACT))
            for form, compiled in ((form, trained(form)) for form in training_step.TRAINED[1:])}


def _summarise(args: argparse.Namespace, counts: Bench, config: ACTConfig, times: dict[str, list[float]],
               compile_seconds: dict[str, float], explained: dict[str, Any],
               steps: dict[str, _Step | _Deployed]) -> dict:
    """The bench's result: each row's timings, the run's environment as its options gave it, and its settings."""
    base = statistics.median(times["legacy eager"])
    rows = {}
    for name, values in times.items():
        quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        median = statistics.median(values)
        rows[name] = {
            "median_ms": median * 1e3, "p25_ms": quartiles[0] * 1e3, "p75_ms": quartiles[2] * 1e3,
            "min_ms": min(values) * 1e3, "speedup_vs_legacy_eager": base / median,
            "samples_per_s": counts.batch_size / median, "compile_s": compile_seconds.get(name),
        }
        form = steps[name].form
        if isinstance(form, CompiledForm):
            rows[name]["graphs_compiled"] = form.stats.frames_compiled
    return {
        "kind": "bench",
        "command": shlex.join(["act-equiv", *sys.argv[1:]]),
        "environment": environment(args.device, backend=args.backend, mode=args.mode, forms=args.forms,
                                   onnx_exporter=args.onnx_exporter),
        "settings": {"config": args.config, "batch_size": counts.batch_size, "num_runs": counts.num_runs,
                     "warmup": counts.warmup, "training": counts.training, "model": config.to_dict()},
        "rows": rows,
        "graph_breaks": {form: {"graphs": r.graph_count, "breaks": r.graph_break_count,
                                "reasons": r.break_reasons, "ops": r.op_count} for form, r in explained.items()},
    }


def markdown(result: dict[str, Any]) -> str:
    env, settings = result["environment"], result["settings"]
    lines = [
        f"# act_equiv bench: {settings['config']}, batch {settings['batch_size']}, "
        f"{'training step' if settings['training'] else 'inference'}",
        "",
        f"`{result['command']}`",
        "",
        f"torch {env['torch']}, python {env['python']}, {env['machine']}, device {env['device']}, "
        f"backend {env['backend']}, mode {env['mode'] or 'default'}; {settings['num_runs']} interleaved rounds after "
        f"{settings['warmup']} warm-up calls per form.",
        "",
        "| form | median ms | p25–p75 ms | speedup vs legacy eager | samples/s | compile s |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in result["rows"].items():
        compile_s = "-" if r["compile_s"] is None else f"{r['compile_s']:.1f}"
        lines.append(f"| {name} | {r['median_ms']:.2f} | {r['p25_ms']:.2f}–{r['p75_ms']:.2f} | "
                     f"{r['speedup_vs_legacy_eager']:.2f}x | {r['samples_per_s']:.1f} | {compile_s} |")
    lines += ["", "| eager form | graphs | graph breaks | ops | break reasons |", "|---|---|---|---|---|"]
    for form, g in result["graph_breaks"].items():
        lines.append(f"| {form} | {g['graphs']} | {g['breaks']} | {g['ops']} | {'; '.join(g['reasons']) or '-'} |")
    for form, rows in result.get("training_error", {}).items():
        lines += ["", f"Training error, {form} vs concat eager, per step (the envelope: eager float32 vs float64):",
                  "", "| step | max abs | max rel | envelope max abs | envelope max rel |", "|---|---|---|---|---|"]
        lines += [f"| {row['step']} | {row['max_abs']:.3g} | {row['max_rel']:.3g} | {row['envelope_max_abs']:.3g} | "
                  f"{row['envelope_max_rel']:.3g} |" for row in rows]
        plot = result.get("plots", {}).get(form)
        lines += ["", f"![{form} per step]({plot})" if plot else f"(no plot: {plots.PLOTS_EXTRA} draws one)"]
    return "\n".join(lines) + "\n"


def _settings_label(result: dict[str, Any]) -> str:
    """A bench's settings in a few words (a plot's title)."""
    env, settings = result["environment"], result["settings"]
    return f"{settings['config']}, batch {settings['batch_size']}, {env['backend']}, {env['device']}"


def run(args: argparse.Namespace) -> int:
    result = measure(args, progress=lambda line: print(f"bench: {line}", flush=True))
    run_id = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    directory = Path(args.report_dir) / f"bench-{run_id}"
    directory.mkdir(parents=True, exist_ok=True)
    for form, rows in result.get("training_error", {}).items():
        name = f"{form.replace(' ', '-')}.png"
        entry = {"steps": rows, "level": f"bench {_settings_label(result)}", "class": form, "case": result["settings"]
                 ["config"], "pair": f"concat eager/{form.removeprefix('concat ')}"}
        if plots.trajectory(entry, directory / name):
            result.setdefault("plots", {})[form] = name
    (directory / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (directory / "bench.md").write_text(text)
    print(text)
    print(f"report: {directory / 'bench.json'}")
    return 0
