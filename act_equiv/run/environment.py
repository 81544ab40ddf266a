"""What a report states about where and how it ran, written once for `act-equiv check`, the plugin and `bench`."""

from __future__ import annotations

import platform
from typing import Any

import torch

from act_equiv.run.numerics import pinned_settings


def environment(device: str, **settings: Any) -> dict[str, Any]:
    """torch and python versions, the machine, the device's name, then the run's own `settings` in their order."""
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        **settings,
    }


def gate_environment(target: str, device: str, dtype: str, backend: str | None, mode: str | None,
                     dynamic: bool | None, eager_rounding: bool, autocast: str | None = None,
                     forms: str = "compiled", onnx_exporter: str = "dynamo") -> dict[str, Any]:
    """A gate's (`Gate` keywords in): its settings, by the names its options have, and the numerics it pins."""
    return environment(device, target=target, backend=backend, mode=mode, dtype=dtype, autocast=autocast,
                       dynamic=dynamic, eager_tolerance="rounding" if eager_rounding else "bitwise",
                       forms=forms if isinstance(forms, str) else ",".join(forms), onnx_exporter=onnx_exporter,
                       **pinned_settings(device))
