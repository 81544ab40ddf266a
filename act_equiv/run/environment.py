"""What a report states about where and how it ran, written once for `act-equiv check`, the plugin and `bench`."""

from __future__ import annotations

import platform
from typing import Any

import torch

from act_equiv.run.numerics import pinned_settings
from act_equiv.settings import Settings


def environment(device: str, **settings: Any) -> dict[str, Any]:
    """torch and python versions, the machine, the device's name, then the run's own `settings` in their order."""
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        **settings,
    }


def gate_environment(settings: Settings, sides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A gate's: its settings, by the names their options have, where each side ran (`sides`, by role), and the
    numerics it pins."""
    return environment(settings.device, **settings.stated(), **({"sides": sides} if sides is not None else {}),
                       **pinned_settings(settings.device))
