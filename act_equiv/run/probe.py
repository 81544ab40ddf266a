"""The model level as one callable: the inner model's forward plus act_equiv's loss, every output by name. Every
form of a side calls (or compiles, or traces) this same function."""

from __future__ import annotations

from typing import Any

from torch import nn

from act_equiv.config import ACTION, ACTConfig
from act_equiv.models import ACTPolicy
from act_equiv.run.records import Outputs

__all__ = ["Probe"]


class Probe(nn.Module):
    """Model forward plus act_equiv's loss as one function, returning every output by name."""

    def __init__(self, config: ACTConfig, model: nn.Module) -> None:
        super().__init__()
        self.policy = ACTPolicy(config, model)

    def forward(self, batch: dict[str, Any]) -> Outputs:
        output = self.policy.model(batch)
        actions, (mu, log_sigma_x2) = output
        outputs = {"actions": actions, "mu": mu, "log_sigma_x2": log_sigma_x2}
        if ACTION in batch:  # inference batches carry no actions, so there is no loss to compute
            loss, terms = self.policy.loss(batch, output)
            outputs.update(loss=loss, **terms)
        return outputs
