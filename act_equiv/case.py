"""A test case as plain data: a config, a batch recipe and a mode, reproducible from JSON alone.

Batches are not stored element by element: a `BatchSpec` (size, seed, magnitude, padding pattern) makes the
same tensors on any machine, which keeps reports and replays small and Hypothesis's shrinking meaningful
(it shrinks the recipe, not thousands of floats).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import torch

from act_equiv.config import ACTION, ACTION_IS_PAD, OBS_ENV_STATE, OBS_IMAGES, OBS_STATE, ACTConfig, feature_grid

DEEP_LAYERS = 3
"""Encoder layers from which a config is "deep" (`act_equiv.coverage.FACTORS`): a bug in any layer past the first two
shows only there."""
PAD_PATTERNS: tuple[str, ...] = ("none", "some", "all_but_one")
"""`action_is_pad` per row: nothing padded; a random tail per row, the first row's at least one step long; or
every step but the first padded. With `chunk_size` 1 nothing can be padded (the first step never is)."""


@dataclass(frozen=True)
class BatchSpec:
    batch_size: int = 2
    seed: int = 0
    scale: float = 1.0
    pad: str = "none"
    actions: bool = True
    """Whether the batch carries `action` and `action_is_pad`: training always does; inference does not, and a
    validation pass in eval does (LeRobot computes validation losses that way)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"BatchSpec.batch_size={self.batch_size} is invalid: an int >= 1")
        if self.pad not in PAD_PATTERNS:
            raise ValueError(f"BatchSpec.pad={self.pad!r} is invalid: one of {list(PAD_PATTERNS)}")
        if not self.actions and self.pad != "none":
            raise ValueError(f"BatchSpec.pad={self.pad!r} is invalid without actions: 'none'")

    def with_batch_size(self, batch_size: int) -> BatchSpec:
        return dataclasses.replace(self, batch_size=batch_size)


def make_batch(
    config: ACTConfig, spec: BatchSpec, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> dict[str, Any]:
    """The batch LeRobot's ACT reads, built deterministically from `spec` (CPU generator, then moved)."""
    gen = torch.Generator().manual_seed(spec.seed)
    b = spec.batch_size

    def values(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * spec.scale).to(device=device, dtype=dtype)

    batch: dict[str, Any] = {}
    if config.state_dim is not None:
        batch[OBS_STATE] = values(b, config.state_dim)
    if config.env_state_dim is not None:
        batch[OBS_ENV_STATE] = values(b, config.env_state_dim)
    if config.camera_shapes:
        batch[OBS_IMAGES] = [values(b, *shape) for shape in config.camera_shapes]
    if spec.actions:
        batch[ACTION] = values(b, config.chunk_size, config.action_dim)
        batch[ACTION_IS_PAD] = _padding(spec.pad, b, config.chunk_size, gen).to(device)
    return batch


def _padding(pattern: str, batch_size: int, chunk_size: int, gen: torch.Generator) -> torch.Tensor:
    steps = torch.arange(chunk_size).unsqueeze(0)
    if pattern == "none":
        first_pad = torch.full((batch_size, 1), chunk_size)
    elif pattern == "all_but_one":
        first_pad = torch.ones((batch_size, 1), dtype=torch.long)
    else:
        first_pad = torch.randint(1, chunk_size + 1, (batch_size, 1), generator=gen)
        first_pad[0] = first_pad[0].clamp(max=max(chunk_size - 1, 1))
    return steps >= first_pad


def has_padding(spec: BatchSpec, chunk_size: int) -> bool:
    """Whether `make_batch` pads any step for this recipe (tests check it against the tensors themselves)."""
    return spec.actions and spec.pad != "none" and chunk_size >= 2


@dataclass(frozen=True)
class Case:
    """One example: what to build (config, weight seed), what to feed (batch) and in which mode."""

    config: ACTConfig
    batch: BatchSpec = field(default_factory=BatchSpec)
    training: bool = False
    weight_seed: int = 0
    weight_scale: float = 0.1
    """How far every learned weight is drawn from its init value (`act_equiv.models.build`), so that code ignoring a
    parameter at its init (a LayerNorm at weight 1, bias 0) cannot hide: 0.01 is near init, 1 as far again as init's
    own spread."""

    def __post_init__(self) -> None:
        if not self.weight_scale >= 0:
            raise ValueError(f"Case.weight_scale={self.weight_scale!r} is invalid: a float >= 0")
        if self.training and not self.batch.actions:
            raise ValueError("Case.batch.actions=False is invalid in training: the loss needs the actions (True)")

    def features(self) -> dict[str, bool | int]:
        """The values of the features that interact (`act_equiv.coverage.FACTORS`), as this case really has them:
        padding only where a step is padded, distinct grids only where the backbone's feature maps differ."""
        c, b = self.config, self.batch
        return {
            "use_vae": c.use_vae,
            "training": self.training,
            "actions": b.actions,
            "padding": has_padding(b, c.chunk_size),
            "state": c.state_dim is not None,
            "env": c.env_state_dim is not None,
            "cameras": len(c.camera_shapes),
            "distinct_grids": len({feature_grid(h, w) for _, h, w in c.camera_shapes}) > 1,
            "batch_gt1": b.batch_size > 1,
            "batch_ge5": b.batch_size >= 5,
            "deep": c.n_encoder_layers >= DEEP_LAYERS,
            "dropout": c.dropout > 0,
            "pre_norm": c.pre_norm,
            "temporal_ensemble": c.temporal_ensemble_coeff is not None,
            "short_action_steps": c.n_action_steps < c.chunk_size,
            "kl_weight_not_1": c.kl_weight != 1,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "batch": dataclasses.asdict(self.batch),
            "training": self.training,
            "weight_seed": self.weight_seed,
            "weight_scale": self.weight_scale,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Case:
        return cls(
            config=ACTConfig.from_dict(data["config"]),
            batch=BatchSpec(**data["batch"]),
            training=data["training"],
            weight_seed=data["weight_seed"],
            weight_scale=data.get("weight_scale", 0.0),  # cases recorded before weights were drawn had init values
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @property
    def weights(self) -> tuple[int, float]:
        """What fixes the weights (seed and scale): cases that share it share a state_dict."""
        return self.weight_seed, self.weight_scale

    def structure_key(self) -> str:
        """Configs with the same key compile to the same graph (weights and batch values don't matter)."""
        return self.config.to_json()

    def describe(self) -> str:
        c = self.config
        parts = [
            "vae" if c.use_vae else "no-vae",
            f"{len(c.camera_shapes)}cam" + ("" if not c.camera_shapes else str([s[1:] for s in c.camera_shapes])),
            "state" if c.state_dim else "no-state",
            "env" if c.env_state_dim else "no-env",
            f"B={self.batch.batch_size}",
            "train" if self.training else ("eval" if self.batch.actions else "eval no-actions"),
        ]
        if has_padding(self.batch, c.chunk_size):
            parts.append("padded")
        # The policy-level features a reproducer may hinge on, where they are not the plain ones.
        if c.n_action_steps < c.chunk_size:
            parts.append(f"steps={c.n_action_steps}/{c.chunk_size}")
        if c.temporal_ensemble_coeff is not None:
            parts.append(f"ensemble={c.temporal_ensemble_coeff:g}")
        if c.use_vae and c.kl_weight != 1.0:
            parts.append(f"kl={c.kl_weight:g}")
        # What a reproducer may hinge on beyond the features: depth, input magnitude, distance of weights from init.
        if c.n_encoder_layers >= DEEP_LAYERS:
            parts.append(f"encoder_layers={c.n_encoder_layers}")
        if self.batch.scale != 1.0:
            parts.append(f"scale={self.batch.scale:g}")
        if self.weight_scale != 0.1:
            parts.append(f"weight_scale={self.weight_scale:g}")
        return " ".join(parts)


MUST_KEEP = [
    Case(ACTConfig(state_dim=3, env_state_dim=2, camera_shapes=[(3, 64, 32), (3, 32, 96)], action_dim=2,
                   vision_backbone="tiny_resnet", dim_model=16, n_heads=2, dim_feedforward=16, chunk_size=4,
                   n_action_steps=4, n_encoder_layers=1, n_decoder_layers=1, n_vae_encoder_layers=1, latent_dim=4),
         BatchSpec(batch_size=2, seed=1, pad="some"), training=training)
    for training in (False, True)
]
"""Kept in every run of the property suite, whatever is drawn: the shapes that bugs in token assembly need (two
cameras of different resolutions with state and env, batch > 1, padded actions), in eval and in training. Tests
use them as their standard cases."""
MUST_KEEP_INFERENCE = Case(MUST_KEEP[0].config, BatchSpec(batch_size=2, seed=1, actions=False))
"""The eval case without actions: inference as a robot runs it."""
