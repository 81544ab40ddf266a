"""Hypothesis strategies for ACT: `from act_equiv import strategies as aes`.

- `configs(**pins)`: valid ACTConfigs (pin `cameras=2`, `use_vae=True`, any field, values or strategies).
- `invalid_configs()`: configs with one rule broken, and the field the error must name.
- `batch_specs(config)` / `batches(config)`: batch recipes / tensors (batch size from 1, magnitudes, padding).
- `cases(**pins)`: config + batch recipe + train/eval + weight seed, what the oracle runs.
"""

from act_equiv.strategies._batches import SCALES, batch_specs, batches, cases
from act_equiv.strategies._configs import InvalidConfig, configs, invalid_configs

__all__ = ["SCALES", "InvalidConfig", "batch_specs", "batches", "cases", "configs", "invalid_configs"]
