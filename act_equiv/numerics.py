"""Pinned numerics: the settings under which two runs of the same math on CUDA are comparable bit for bit, and
the autocast context of mixed-precision runs.

On CUDA every form runs with
- TF32 off (`compat.tf32_disabled`): cuDNN convolutions use TF32 by default, which rounds fp32 inputs to 10
  mantissa bits; the fp32 tolerances were measured without it;
- cuDNN deterministic, benchmark off: benchmark mode picks kernels by timing, so two runs may use different ones;
- deterministic algorithms (warn only) and `CUBLAS_WORKSPACE_CONFIG=:4096:8`, cuBLAS's requirement for
  reproducible results: kernels that sum with atomics (scatter/index_add backward) sum in a different order
  per run, and the eager target must repeat itself bit for bit before anything is compared with it.
The CPU kernels act_equiv runs are deterministic already; there nothing is changed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from act_equiv import compat

__all__ = ["AUTOCAST_DTYPES", "CUBLAS_WORKSPACE", "autocast", "pinned", "pinned_settings"]

AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16, "float16": torch.float16}
"""Mixed-precision runs: the model's weights stay float32 and `torch.autocast` runs eligible ops in this dtype."""

CUBLAS_WORKSPACE = ":4096:8"


@contextlib.contextmanager
def pinned(device: str) -> Iterator[None]:
    """Run the block with CUDA's numerics pinned (see the module docstring); a no-op on CPU. Restored on exit."""
    if device != "cuda":
        yield
        return
    # cuBLAS reads this when it creates a handle; setting it before the first CUDA matmul of the process suffices.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        with compat.tf32_disabled():
            yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


def pinned_settings(device: str) -> dict[str, object]:
    """What `pinned(device)` sets, as a report states it."""
    if device != "cuda":
        return {"tf32": "n/a (cpu)", "deterministic": "cpu kernels"}
    with pinned(device):
        return {"tf32": compat.tf32_enabled(), "deterministic": torch.are_deterministic_algorithms_enabled(),
                "cublas_workspace": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}


def autocast(device: str, name: str | None) -> contextlib.AbstractContextManager[object]:
    """`torch.autocast` in the named dtype, or nothing when `name` is None (a full-precision run)."""
    if name is None:
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=AUTOCAST_DTYPES[name])
