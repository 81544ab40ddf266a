"""ACT in two forms that share one set of weights, and the policy around them.

- `LegacyACT`: LeRobot's list-built forward, the frozen reference.
- `ACT`: the tensor-concat refactor.
- `build(config, seed, form)`: identical weights for the same seed, whatever the form.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from act_equiv.config import ACTConfig
from act_equiv.models.backbone import FrozenBatchNorm2d
from act_equiv.models.base import ACTBase, ACTOutput, Batch
from act_equiv.models.concat import ACT
from act_equiv.models.legacy import LegacyACT
from act_equiv.models.policy import ACTPolicy, ACTTemporalEnsembler

__all__ = ["ACT", "ACTBase", "ACTOutput", "ACTPolicy", "ACTTemporalEnsembler", "Batch", "LegacyACT", "build",
           "reference_state_dict"]


def build(config: ACTConfig, seed: int = 0, form: Callable[[ACTConfig], nn.Module] = ACT,
          scale: float = 0.1) -> nn.Module:
    """Construct `form(config)` (any ACT factory) with weights fixed by `seed` and drawn `scale` away from their init
    values, as a trained checkpoint's are (the global RNG is left untouched).

    At init a LayerNorm is weight 1 / bias 0, attention biases are 0 and frozen batch-norm is the identity: code that
    ignores such a parameter computes the same numbers, and no comparison could tell it from correct code. So every
    parameter gets `scale` x its own spread (unit spread where init made it constant) of Gaussian noise, and the
    frozen batch-norm statistics are drawn. Buffers that are computed, not learned (the VAE encoder's sinusoidal
    table), keep their values: every checkpoint holds exactly those.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = form(config)
        with torch.no_grad():
            for parameter in model.parameters():
                spread = float(parameter.std()) if parameter.numel() > 1 else 0.0
                parameter.add_(torch.randn(parameter.shape) * scale * (spread or 1.0))
            for module in model.modules():
                if type(module).__name__ == FrozenBatchNorm2d.__name__:  # act_equiv's or torchvision's
                    n = module.weight.numel()
                    module.weight.copy_(torch.rand(n) + 0.5)
                    module.bias.copy_(torch.randn(n) * 0.1)
                    module.running_mean.copy_(torch.randn(n) * 0.1)
                    module.running_var.copy_(torch.rand(n) + 0.5)
    return model


def reference_state_dict(config: ACTConfig, seed: int = 0, scale: float = 0.1) -> dict[str, torch.Tensor]:
    """The seeded weights of the legacy reference, to load `strict=True` into any target."""
    return build(config, seed, LegacyACT, scale).state_dict()
