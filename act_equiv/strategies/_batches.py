"""Strategies for batches (as reproducible recipes) and whole cases."""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import strategies as st

from act_equiv.case import PAD_PATTERNS, BatchSpec, Case, make_batch
from act_equiv.config import ACTConfig
from act_equiv.strategies._configs import _as_strategy, configs

# Magnitudes of inputs: unit scale and large values (LayerNorm and attention softmax must cope with both).
SCALES = (1.0, 100.0, 1e4)


@st.composite
def batch_specs(
    draw: st.DrawFn,
    config: ACTConfig | None = None,
    *,
    batch_size: int | st.SearchStrategy[int] | None = None,
    max_batch_size: int = 4,
    scale: float | st.SearchStrategy[float] | None = None,
    pad: str | st.SearchStrategy[str] | None = None,
) -> BatchSpec:
    """Batch recipes: sizes from 1, seeds, input magnitudes and `action_is_pad` patterns."""
    return BatchSpec(
        batch_size=draw(_as_strategy(batch_size) if batch_size is not None else st.integers(1, max_batch_size)),
        seed=draw(st.integers(0, 2**16)),
        scale=draw(_as_strategy(scale) if scale is not None else st.sampled_from(SCALES)),
        pad=draw(_as_strategy(pad) if pad is not None else st.sampled_from(PAD_PATTERNS)),
    )


def batches(
    config: ACTConfig, *, device: str = "cpu", dtype: torch.dtype = torch.float32, **spec_pins: Any
) -> st.SearchStrategy[dict[str, Any]]:
    """Batches as LeRobot's ACT reads them (a dict of tensors), for properties of your own."""
    return batch_specs(config, **spec_pins).map(lambda spec: make_batch(config, spec, device, dtype))


@st.composite
def cases(
    draw: st.DrawFn,
    *,
    training: bool | st.SearchStrategy[bool] | None = None,
    batch: dict[str, Any] | None = None,
    **config_pins: Any,
) -> Case:
    """Whole examples: a config (pins as in `configs`), a batch recipe (pins in `batch=`) and a mode."""
    config = draw(configs(**config_pins))
    return Case(
        config=config,
        batch=draw(batch_specs(config, **(batch or {}))),
        training=draw(_as_strategy(training) if training is not None else st.booleans()),
        weight_seed=draw(st.integers(0, 2**16)),
    )
