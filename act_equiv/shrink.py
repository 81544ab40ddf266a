"""Greedy shrinking of a failing case within a time budget, cheapest candidates first.

Hypothesis shrinks eager-stage failures well: a candidate costs milliseconds. Two cases need more:
- a compiled-stage failure: every candidate of a new structure recompiles (seconds each), and Hypothesis's
  shrinker tries candidates in an order that knows nothing of compile cost (measured: 6 min to shrink a graph
  break found in 2.5 s). Here the candidates that keep the structure (batch changes: no recompile) come first,
  then the structures that compile fastest;
- a failure from a covering-array row: Hypothesis shrinks what it drew, but the row's pinned features (VAE,
  training, cameras, ...) stay pinned. This pass tries each pinned feature at its simplest value.

A candidate is kept when it fails the same way: it still has the original's main failure (its first finding, else its
first refused class, else its first failed form pair), as Hypothesis keeps a candidate that raises the same error;
a candidate that fails only otherwise (the model level bitwise where the original diverged there) is another
failure, not a smaller one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from act_equiv.case import Case
from act_equiv.config import ACTConfig, ConfigError
from act_equiv.oracle.verdict import CaseVerdict

Rerun = Callable[[Case], CaseVerdict]
"""A case -> its verdict (the gate's, within the stage that failed)."""


@dataclass
class ShrinkResult:
    verdict: CaseVerdict
    """The smallest failing verdict found."""
    steps: int
    """Candidates judged."""
    seconds: float
    stopped_at_budget: bool

    def to_dict(self) -> dict[str, object]:
        return {"steps": self.steps, "seconds": round(self.seconds, 1), "stopped_at_budget": self.stopped_at_budget}


def signature(verdict: CaseVerdict) -> list[str]:
    """What failed, coarsely, the main failure first: finding kinds, the classes refused with the side and exception
    type of a raise (`model: raised (target KeyError)`: a candidate that raises otherwise is another failure), and
    the target's forms (or, for the reference/target pairs, the pairs) of failed tensor checks, whatever the batch
    size and mode."""
    return list(dict.fromkeys([f.check for f in verdict.findings] + [f"{c.level}: {c.name}" + "".join(
        f" ({side} {error['type']})" for side, error in c.detail.items() if "type" in error)
        for c in verdict.classes.values() if not c.accepted] + [c.form or c.pair for c in verdict.checks
                                                                 if not c.passed]))


def shrink(rerun: Rerun, failure: CaseVerdict, budget: float) -> ShrinkResult:
    """Repeatedly replace the failure by its first simpler candidate that still fails the same way."""
    start, steps = time.perf_counter(), 0
    best, wanted = failure, signature(failure)[:1]
    improved = True
    while improved:
        improved = False
        for candidate in candidates(best.case):
            if time.perf_counter() - start > budget:
                return ShrinkResult(best, steps, time.perf_counter() - start, True)
            steps += 1
            verdict = rerun(candidate)
            if not verdict.passed and wanted[0] in signature(verdict):
                best, improved = verdict, True
                break
    return ShrinkResult(best, steps, time.perf_counter() - start, False)


def candidates(case: Case) -> list[Case]:
    """Simpler variants of `case`: the same structure first (no recompile), then new structures, cheapest first."""
    same = [c for c in _batch_variants(case) if c != case]
    structures = {c.config.to_json(): c for c in _config_variants(case) if c.config != case.config}
    return same + sorted(structures.values(), key=lambda c: structure_cost(c.config))


def structure_cost(config: ACTConfig) -> int:
    """A compile-cost estimate: modules to trace (each camera's backbone weighs most), then width."""
    layers = config.n_encoder_layers + config.n_decoder_layers + config.use_vae * config.n_vae_encoder_layers
    return 1000 * len(config.camera_shapes) + 100 * layers + config.dim_model + config.chunk_size


def _batch_variants(case: Case) -> Iterator[Case]:
    b = case.batch
    yield dataclasses.replace(case, training=False) if case.training else case
    yield dataclasses.replace(case, batch=dataclasses.replace(b, batch_size=1))
    yield dataclasses.replace(case, batch=dataclasses.replace(b, pad="none"))
    if not case.training:
        yield dataclasses.replace(case, batch=dataclasses.replace(b, pad="none", actions=False))
    yield dataclasses.replace(case, batch=dataclasses.replace(b, scale=1.0))
    yield dataclasses.replace(case, batch=dataclasses.replace(b, seed=0))
    yield dataclasses.replace(case, weight_seed=0)
    yield dataclasses.replace(case, weight_scale=0.1)


HALVED = ("latent_dim", "action_dim", "state_dim", "env_state_dim", "dim_feedforward", "dim_model", "chunk_size",
          "n_action_steps")
"""Config sizes the shrinker halves once the simplest value did not fail the same way."""


def _config_variants(case: Case) -> Iterator[Case]:
    c = case.config
    shapes = list(c.camera_shapes)
    changes: list[dict[str, object]] = [
        {"use_vae": False},
        *({"camera_shapes": shapes[:i] + shapes[i + 1:]} for i in range(len(shapes))),
        {"camera_shapes": [shapes[0]] * len(shapes)} if shapes else {},
        *({"camera_shapes": [*shapes[:i], (3, 32, 32), *shapes[i + 1:]]} for i in range(len(shapes))),
        {"state_dim": None},
        {"env_state_dim": None},
        {"n_encoder_layers": 1}, {"n_decoder_layers": 1}, {"n_vae_encoder_layers": 1},
        {"dropout": 0.0}, {"pre_norm": False}, {"feedforward_activation": "relu"},
        {"temporal_ensemble_coeff": None},
        {"chunk_size": 2, "n_action_steps": min(c.n_action_steps, 2)} if c.chunk_size > 2 else {},
        {"n_heads": 1}, {"dim_model": 8, "n_heads": min(c.n_heads, 8)}, {"dim_feedforward": 8},
        {"latent_dim": 1}, {"action_dim": 1},
        {"state_dim": 1} if c.state_dim else {}, {"env_state_dim": 1} if c.env_state_dim else {},
        {"kl_weight": 1.0}, {"n_action_steps": 1},
        # Where the simplest value passes, a smaller failing one is still simpler: halve each size.
        *({name: getattr(c, name) // 2} for name in HALVED if (getattr(c, name) or 0) > 1),
    ]
    for change in changes:
        if not change or any(_larger(value, getattr(c, name)) for name, value in change.items()):
            continue  # a candidate is never larger than the case (else halving and the simplest value alternate)
        try:
            yield dataclasses.replace(case, config=c.replace(**change))
        except (ConfigError, ValueError):
            continue


def _larger(value: object, current: object) -> bool:
    numbers = (int, float)
    return (isinstance(value, numbers) and isinstance(current, numbers) and not isinstance(value, bool)
            and value > current)
