"""Shared fixtures: a small ACTConfig factory and a batch factory that follows the model's batch contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from act_equiv import ACTConfig, case, plugin
from act_equiv.case import BatchSpec
from act_equiv.config import ACTION, ACTION_IS_PAD

pytest_plugins = ["pytester"]

# Small enough that a build + forward + backward of both forms takes milliseconds on CPU.
TINY_CONFIG: dict[str, Any] = {
    "vision_backbone": "tiny_resnet",
    "state_dim": 5,
    "env_state_dim": 3,
    "camera_shapes": ((3, 32, 32),),
    "action_dim": 4,
    "chunk_size": 6,
    "n_action_steps": 6,
    "dim_model": 16,
    "n_heads": 2,
    "dim_feedforward": 32,
    "n_encoder_layers": 2,
    "n_decoder_layers": 1,
    "n_vae_encoder_layers": 1,
    "latent_dim": 8,
    "dropout": 0.0,
}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """This repo's run relies on act_equiv's Hypothesis profiles and its session report, so it asks the plugin for
    them; before Hypothesis's own pytest_configure, which loads a `--hypothesis-profile` only act_equiv defines."""
    plugin.activate(config)


@pytest.fixture
def tiny_config() -> Callable[..., ACTConfig]:
    """`tiny_config(**overrides)`: an ACTConfig with the tiny backbone and small dims."""

    def make(**overrides: Any) -> ACTConfig:
        return ACTConfig(**{**TINY_CONFIG, **overrides})

    return make


@pytest.fixture
def make_batch() -> Callable[..., dict[str, Any]]:
    """`make_batch(config, batch_size=2, seed=0, dtype=float32, with_action=True)`: `act_equiv.case.make_batch`
    with a random padded tail per row, or without the action keys (inference)."""

    def make(
        config: ACTConfig,
        batch_size: int = 2,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        with_action: bool = True,
    ) -> dict[str, Any]:
        batch = case.make_batch(config, BatchSpec(batch_size, seed, pad="some"), dtype=dtype)
        if not with_action:
            del batch[ACTION], batch[ACTION_IS_PAD]
        return batch

    return make


@pytest.fixture(scope="module")
def one_intra_op_thread():
    """Tiny models gain nothing from intra-op threads, and OpenMP spin-waits badly on a busy 2-core machine
    (measured: 12 s single-threaded vs 140 s with 2 threads beside another job). Restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
