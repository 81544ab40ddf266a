"""What a target is: a name, a factory `ACTConfig -> nn.Module` and what it cannot express."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from act_equiv.config import ACTConfig

__all__ = ["Factory", "Target"]

Factory = Callable[[ACTConfig], nn.Module]


@dataclass(frozen=True)
class Target:
    name: str
    factory: Factory
    unsupported: Callable[[ACTConfig], str | None] = lambda config: None
    """Why this target cannot express a config (the case is skipped with that reason), or None."""
