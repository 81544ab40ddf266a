"""What a target is: a name, a factory `ACTConfig -> nn.Module`, the policy around it and what it cannot express."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from act_equiv.config import ACTConfig
from act_equiv.models import ACTPolicy

__all__ = ["Factory", "PolicyFactory", "Target"]

Factory = Callable[[ACTConfig], nn.Module]
PolicyFactory = Callable[[ACTConfig, nn.Module], nn.Module]
"""(config, the loaded inner model) -> a policy with `forward` (loss, loss dict), `predict_action_chunk`,
`select_action` and `reset`, as LeRobot's `ACTPolicy` has them."""


@dataclass(frozen=True)
class Target:
    name: str
    factory: Factory
    unsupported: Callable[[ACTConfig], str | None] = lambda config: None
    """Why this target cannot express a config (the case is skipped with that reason), or None."""
    policy: PolicyFactory = ACTPolicy
    """The policy-level form: act_equiv's `ACTPolicy` unless the implementation brings its own (LeRobot's)."""
    about: Mapping[str, Any] = field(default_factory=dict)
    """What a report states about where the implementation comes from (a version, a revision, a file)."""

    def make_policy(self, config: ACTConfig, model: nn.Module) -> nn.Module:
        return self.policy(config, model)

    def describe(self) -> dict[str, Any]:
        return dict(self.about)
