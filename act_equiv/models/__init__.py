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


def build(config: ACTConfig, seed: int = 0, form: Callable[[ACTConfig], nn.Module] = ACT) -> nn.Module:
    """Construct `form(config)` (any ACT factory) with weights fixed by `seed` (the global RNG is left untouched).

    Frozen batch-norm statistics are drawn too: at their identity defaults the backbone's normalisation
    would be a no-op that no comparison could tell from a broken one.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = form(config)
        for module in model.modules():
            if type(module).__name__ == FrozenBatchNorm2d.__name__:  # act_equiv's or torchvision's
                n = module.weight.numel()
                module.weight.copy_(torch.rand(n) + 0.5)
                module.bias.copy_(torch.randn(n) * 0.1)
                module.running_mean.copy_(torch.randn(n) * 0.1)
                module.running_var.copy_(torch.rand(n) + 0.5)
    return model


def reference_state_dict(config: ACTConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """The seeded weights of the legacy reference, to load `strict=True` into any target."""
    return build(config, seed, LegacyACT).state_dict()
