"""Shared fixtures: a small ACTConfig factory and a batch factory that follows the model's batch contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from act_equiv import ACTConfig

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


@pytest.fixture
def tiny_config() -> Callable[..., ACTConfig]:
    """`tiny_config(**overrides)`: an ACTConfig with the tiny backbone and small dims."""

    def make(**overrides: Any) -> ACTConfig:
        return ACTConfig(**{**TINY_CONFIG, **overrides})

    return make


@pytest.fixture
def make_batch() -> Callable[..., dict[str, Any]]:
    """`make_batch(config, batch_size=2, seed=0, dtype=float32, with_action=True)`: a seeded random batch.

    Keys follow the batch contract: optional state / environment state, a *list* of (B, 3, H, W) camera
    tensors, and the action chunk with a padding mask where row b pads its last b steps (never all steps).
    """

    def make(
        config: ACTConfig,
        batch_size: int = 2,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        with_action: bool = True,
    ) -> dict[str, Any]:
        gen = torch.Generator().manual_seed(seed)

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=gen, dtype=dtype)

        batch: dict[str, Any] = {}
        if config.state_dim is not None:
            batch["observation.state"] = randn(batch_size, config.state_dim)
        if config.env_state_dim is not None:
            batch["observation.environment_state"] = randn(batch_size, config.env_state_dim)
        if config.camera_shapes:
            batch["observation.images"] = [randn(batch_size, *shape) for shape in config.camera_shapes]
        if with_action:
            batch["action"] = randn(batch_size, config.chunk_size, config.action_dim)
            steps = torch.arange(config.chunk_size)
            n_padded = torch.arange(batch_size) % config.chunk_size
            batch["action_is_pad"] = steps.unsqueeze(0) >= (config.chunk_size - n_padded).unsqueeze(1)
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
