"""Pinned numerics: the settings under which two runs of the same math on CUDA are comparable bit for bit, and
the autocast context of mixed-precision runs.

On CUDA every form runs with
- TF32 off (`compat.tf32_disabled`): cuDNN convolutions use TF32 by default, which rounds fp32 inputs to 10
  mantissa bits; the fp32 tolerances were measured without it;
- cuDNN deterministic, benchmark off: benchmark mode picks kernels by timing, so two runs may use different ones;
- deterministic algorithms (warn only) and `CUBLAS_WORKSPACE_CONFIG=:4096:8`, cuBLAS's requirement for
  reproducible results: kernels that sum with atomics (scatter/index_add backward) sum in a different order
  per run, and the eager target must repeat itself bit for bit before anything is compared with it.
On CPU, one intra-op thread (and deterministic algorithms): with two threads the convolution backward sums the
weight gradient in a different order from run to run. Measured on torch 2.13, 2 threads, one training case (VAE,
one 32x32 camera, batch 1): the backbone's conv weight gradients of two runs under the same seed differed (up to
1.2e-7) in 9 of 10 tries with `use_deterministic_algorithms(True)` and `torch.backends.mkldnn.deterministic`, in
0 of 10 with one thread. The models act_equiv draws are small enough that a second thread gains little.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch.overrides import TorchFunctionMode

from act_equiv import compat, settings

__all__ = ["AUTOCAST_DTYPES", "CUBLAS_WORKSPACE", "DTYPES", "autocast", "float32_sampling", "pinned", "pinned_settings"]

DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in settings.DTYPES}
"""The run's dtype by name (`act_equiv.settings.DTYPES`)."""
AUTOCAST_DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in settings.AUTOCAST}
"""Mixed-precision runs: the model's weights stay float32 and `torch.autocast` runs eligible ops in this dtype."""

CUBLAS_WORKSPACE = ":4096:8"


@contextlib.contextmanager
def pinned(device: str) -> Iterator[None]:
    """Run the block with numerics pinned (see the module docstring). Restored on exit."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    if device == "cuda":
        # cuBLAS reads this when it creates a handle; setting it before the first CUDA matmul of the process suffices.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    threads = torch.get_num_threads()
    try:
        if device != "cuda":
            torch.set_num_threads(1)
            yield
            return
        cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        try:
            with compat.tf32_disabled():
                yield
        finally:
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.set_num_threads(threads)


def pinned_settings(device: str) -> dict[str, object]:
    """What `pinned(device)` sets, as a report states it."""
    with pinned(device):
        if device != "cuda":
            return {"tf32": "n/a (cpu)", "deterministic": torch.are_deterministic_algorithms_enabled(),
                    "intra_op_threads": torch.get_num_threads()}
        return {"tf32": compat.tf32_enabled(), "deterministic": torch.are_deterministic_algorithms_enabled(),
                "cublas_workspace": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}


def autocast(device: str, name: str | None) -> contextlib.AbstractContextManager[object]:
    """`torch.autocast` in the named dtype, or nothing when `name` is None (a full-precision run)."""
    if name is None:
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=AUTOCAST_DTYPES[name])


class float32_sampling(TorchFunctionMode):  # noqa: N801 - used like a function: `with float32_sampling():`
    """Random numbers drawn in float32 and widened, for a float64 run that stands in for a float32 one.

    The float64 reference of the rmse check must compute what the float32 run computed, only exactly. Its random
    draws must therefore be the same numbers: `torch.randn_like` in float64 is a different sample from float32's
    once a tensor has 16 elements or more (another kernel), so the VAE's latent sample would differ and the
    "reference" would be another computation. Dropout needs nothing: bernoulli masks are the same in both dtypes
    (tests/test_numerics.py checks both facts on the running torch). Draws from an explicit generator are left
    alone: they are a batch recipe's (`act_equiv.case.make_batch`, the rollout's observations), the same numbers in
    every run whatever its dtype.
    """

    _LIKE = (torch.randn_like, torch.rand_like)
    _FACTORY = (torch.randn, torch.rand)
    _IN_PLACE = (torch.Tensor.normal_, torch.Tensor.uniform_)

    _SAMPLERS = frozenset((*_LIKE, *_FACTORY, *_IN_PLACE))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in self._SAMPLERS:  # every other op of the float64 run, first: this mode sees them all
            return func(*args, **kwargs)
        if kwargs.get("generator") is not None:  # a recipe's own draws (`make_batch`: float64 in every run), kept
            return func(*args, **kwargs)
        if func in self._LIKE and kwargs.get("dtype", args[0].dtype) == torch.float64:
            return func(*args, **{**kwargs, "dtype": torch.float32}).to(torch.float64)
        if func in self._FACTORY and kwargs.get("dtype", torch.get_default_dtype()) == torch.float64:
            return func(*args, **{**kwargs, "dtype": torch.float32}).to(torch.float64)
        if func in self._IN_PLACE and args[0].dtype == torch.float64:
            sample = func(torch.empty_like(args[0], dtype=torch.float32), *args[1:], **kwargs)
            return args[0].copy_(sample)
        return func(*args, **kwargs)
