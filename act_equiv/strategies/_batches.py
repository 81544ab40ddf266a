"""Strategies for batches (as reproducible recipes) and whole cases."""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import strategies as st

from act_equiv.case import PAD_PATTERNS, BatchSpec, Case, make_batch
from act_equiv.config import ACTConfig
from act_equiv.strategies._configs import CONFIG_KEYWORDS, configs
from act_equiv.strategies._util import as_strategy, eager_composite, keywords

# Magnitudes of inputs: unit scale and large values (LayerNorm and attention softmax must cope with both).
SCALES = (1.0, 100.0, 1e4)
FLOAT16_SCALES = (1.0, 10.0)
"""Under float16 autocast, large inputs overflow float16's range (65504) in the reference itself: measured on
torch 2.13 CPU, the legacy outputs were non-finite in 5 of 31 eval cases at scale 100 and in 47 of 48 cases at
1e4, never at 1 or 10 (120 cases). A non-finite reference is a finding (`reference_not_finite`), so float16 runs
draw only magnitudes float16 can hold. float32 and bfloat16 (float32's range) stayed finite at every scale."""


WEIGHT_SCALES = (0.1, 0.01, 1.0)
"""How far the weights are drawn from init (`Case.weight_scale`): a trained checkpoint's distance first (the shrink
target), near init, and as far again as init's own spread."""
FLOAT16_WEIGHT_SCALES = (0.1, 0.01)
"""Under float16 autocast, weights as far again from init as their own spread overflow the reference: measured on
torch 2.13 CPU, legacy outputs non-finite in 2 of 6 cases at weight scale 1, never at 0.1 (42) or 0.01 (12)."""


def magnitudes_for(autocast: str | None) -> dict[str, tuple[float, ...]]:
    """The input magnitudes and weight scales to draw (keywords of `cases`) when the forms run under `autocast`
    (None: full precision)."""
    if autocast == "float16":
        return {"scales": FLOAT16_SCALES, "weight_scales": FLOAT16_WEIGHT_SCALES}
    return {"scales": SCALES, "weight_scales": WEIGHT_SCALES}


@eager_composite()
def batch_specs(
    draw: st.DrawFn,
    *,
    batch_size: int | st.SearchStrategy[int] | None = None,
    max_batch_size: int = 4,
    scale: float | st.SearchStrategy[float] | None = None,
    pad: str | st.SearchStrategy[str] | None = None,
    actions: bool | st.SearchStrategy[bool] = True,
    scales: tuple[float, ...] = SCALES,
) -> BatchSpec:
    """Batch recipes: sizes from 1, seeds, input magnitudes, `action_is_pad` patterns, with or without actions.
    A recipe fits any config (`make_batch` reads the shapes from it). Shrinks to one row, seed 0, scale 1, no
    padding."""
    has_actions = draw(as_strategy(actions))
    default_pad = st.sampled_from(PAD_PATTERNS) if has_actions else st.just("none")
    return BatchSpec(
        batch_size=draw(as_strategy(batch_size) if batch_size is not None else st.integers(1, max_batch_size)),
        seed=draw(st.integers(0, 2**16)),
        scale=draw(as_strategy(scale) if scale is not None else st.sampled_from(scales)),
        pad=draw(as_strategy(pad) if pad is not None else default_pad),
        actions=has_actions,
    )


def batches(
    config: ACTConfig, *, device: str = "cpu", dtype: torch.dtype = torch.float32, **spec_pins: Any
) -> st.SearchStrategy[dict[str, Any]]:
    """Batches as LeRobot's ACT reads them (a dict of tensors), for properties of your own."""
    return batch_specs(**spec_pins).map(lambda spec: make_batch(config, spec, device, dtype))


@eager_composite(pins=CONFIG_KEYWORDS, batch=keywords(batch_specs))
def cases(
    draw: st.DrawFn,
    *,
    training: bool | st.SearchStrategy[bool] | None = None,
    batch: dict[str, Any] | None = None,
    scales: tuple[float, ...] = SCALES,
    weight_scales: tuple[float, ...] = WEIGHT_SCALES,
    **config_pins: Any,
) -> Case:
    """Whole examples: a config (pins as in `configs`), a batch recipe (pins in `batch=`, input magnitudes from
    `scales`) and a mode. Training batches carry actions; eval batches with or without them (inference, or a
    validation loss), its weights drawn away from init (`weight_scales`). Shrinks to `configs`' minimum, in eval,
    without actions, weight seed 0, weight scale 0.1."""
    config = draw(configs(**config_pins))
    is_training = draw(as_strategy(training) if training is not None else st.booleans())
    pins = batch or {}
    spec_pins = {"actions": True if is_training or "pad" in pins else st.booleans(), "scales": scales, **pins}
    return Case(
        config=config,
        batch=draw(batch_specs(**spec_pins)),
        training=is_training,
        weight_seed=draw(st.integers(0, 2**16)),
        weight_scale=draw(st.sampled_from(weight_scales)),
    )
