"""Hypothesis strategies for ACT: `from act_equiv import strategies as aes`.

- `configs(**pins)`: valid ACTConfigs (pin `cameras=2`, `use_vae=True`, any field, values or strategies).
- `invalid_configs()`: configs with one rule broken, and the field the error must name.
- `batch_specs()` / `batches(config)`: batch recipes / tensors (batch size from 1, magnitudes, padding).
- `magnitudes_for(autocast)`: the input magnitudes and weight scales a run in that precision can hold.
- `cases(**pins)`: config + batch recipe + train/eval + weight seed and scale (`WEIGHT_SCALES`), what the oracle
  runs.
- `covering_rows()` / `covering_cases(row)`: the strength-3 covering array over the interacting features, and
  cases with one row's features pinned (`act_equiv.coverage`).
"""

from act_equiv.strategies._batches import (
    FLOAT16_SCALES,
    FLOAT16_WEIGHT_SCALES,
    SCALES,
    WEIGHT_SCALES,
    batch_specs,
    batches,
    cases,
    magnitudes_for,
)
from act_equiv.strategies._configs import InvalidConfig, configs, invalid_configs
from act_equiv.strategies._covering import covering_cases, covering_rows

__all__ = ["FLOAT16_SCALES", "FLOAT16_WEIGHT_SCALES", "SCALES", "WEIGHT_SCALES", "InvalidConfig", "batch_specs",
           "batches", "cases", "configs", "covering_cases", "covering_rows", "invalid_configs",
           "magnitudes_for"]
