"""ACT configuration: LeRobot's field names, defaults and rules, plus a plain feature description.

LeRobot describes inputs with `PolicyFeature`s keyed by name; act_equiv takes the same facts as four
keywords (`state_dim`, `env_state_dim`, `camera_shapes`, `action_dim`) and exposes them through the
properties LeRobot's model reads (`robot_state_feature`, `env_state_feature`, `image_features`,
`action_feature`), so a model written against LeRobot's config runs on ours unchanged.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from act_equiv.errors import ConfigError

__all__ = [
    "ACTION",
    "ACTION_IS_PAD",
    "ACTIVATIONS",
    "BACKBONES",
    "OBS_ENV_STATE",
    "OBS_IMAGES",
    "OBS_STATE",
    "TINY_BACKBONE",
    "ACTConfig",
    "ConfigError",
    "FeatureType",
    "PolicyFeature",
    "feature_grid",
]

TINY_BACKBONE = "tiny_resnet"
"""A narrow 4-stage ResNet that exists only to keep compile times down in property tests.

It is not a LeRobot value: it has the same module tree, strides and call contract as resnet18, with
8..64 channels and one block per stage.
"""

BACKBONES: tuple[str, ...] = ("resnet18", "resnet34", TINY_BACKBONE)
ACTIVATIONS: tuple[str, ...] = ("relu", "gelu")

OBS_STATE = "observation.state"
OBS_ENV_STATE = "observation.environment_state"
OBS_IMAGES = "observation.images"
ACTION = "action"
ACTION_IS_PAD = "action_is_pad"


def feature_grid(height: int, width: int) -> tuple[int, int]:
    """The (h, w) of a camera's backbone feature map (every backbone here has stride 32 in five stride-2 steps:
    stem conv, max pool, layer2..4, each mapping n to ceil(n / 2)). Cameras of different pixel sizes can share a
    grid (48 and 64 both give 2); only distinct grids give distinct 2-D position embeddings."""
    for _ in range(5):
        height, width = (height + 1) // 2, (width + 1) // 2
    return height, width


class FeatureType(str, enum.Enum):
    STATE = "STATE"
    ENV = "ENV"
    VISUAL = "VISUAL"
    ACTION = "ACTION"


@dataclass(frozen=True)
class PolicyFeature:
    type: FeatureType
    shape: tuple[int, ...]


@dataclass
class ACTConfig:
    """LeRobot's ACTConfig fields (same names and defaults) and the input/output feature description."""

    # Feature description (act_equiv's keywords; LeRobot keeps these in input/output_features).
    state_dim: int | None = None
    env_state_dim: int | None = None
    camera_shapes: Sequence[tuple[int, int, int]] = field(default_factory=tuple)
    action_dim: int = 14

    # LeRobot's fields.
    n_obs_steps: int = 1
    chunk_size: int = 100
    n_action_steps: int = 100
    vision_backbone: str = "resnet18"
    pretrained_backbone_weights: str | None = None
    replace_final_stride_with_dilation: bool = False
    pre_norm: bool = False
    dim_model: int = 512
    n_heads: int = 8
    dim_feedforward: int = 3200
    feedforward_activation: str = "relu"
    n_encoder_layers: int = 4
    n_decoder_layers: int = 1
    use_vae: bool = True
    latent_dim: int = 32
    n_vae_encoder_layers: int = 4
    temporal_ensemble_coeff: float | None = None
    dropout: float = 0.1
    kl_weight: float = 10.0
    optimizer_lr: float = 1e-5
    optimizer_weight_decay: float = 1e-4
    optimizer_lr_backbone: float = 1e-5

    def __post_init__(self) -> None:
        self.camera_shapes = tuple(tuple(shape) for shape in self.camera_shapes)  # type: ignore[misc]
        self._validate()
        # Built once: the model reads these in forward, and older dynamo (torch 2.2) breaks the graph on
        # constructing a dataclass there.
        self._features = {
            "state": None if self.state_dim is None else PolicyFeature(FeatureType.STATE, (self.state_dim,)),
            "env": None if self.env_state_dim is None else PolicyFeature(FeatureType.ENV, (self.env_state_dim,)),
            "images": {f"{OBS_IMAGES}.cam{i}": PolicyFeature(FeatureType.VISUAL, tuple(shape))
                       for i, shape in enumerate(self.camera_shapes)},
            "action": PolicyFeature(FeatureType.ACTION, (self.action_dim,)),
        }

    # -- validation -------------------------------------------------------------------------------
    def _validate(self) -> None:
        for name in ("state_dim", "env_state_dim"):
            value = getattr(self, name)
            if value is not None:
                _require_int(name, value, minimum=1, allowed="a positive int or None (feature absent)")
        _require_int("action_dim", self.action_dim, minimum=1)
        for index, shape in enumerate(self.camera_shapes):
            name = f"camera_shapes[{index}]"
            if len(shape) != 3 or not all(_is_int(v) and v >= 1 for v in shape):
                raise ConfigError(name, shape, "a (C, H, W) tuple of positive ints")
            if shape[0] != 3:
                raise ConfigError(name, shape, "images must have 3 channels (the ResNet stem is RGB)")
        if not self.camera_shapes and self.env_state_dim is None:
            raise ConfigError(
                "camera_shapes",
                self.camera_shapes,
                "at least one camera or an environment state (env_state_dim) is required",
            )
        if self.n_obs_steps != 1:
            raise ConfigError("n_obs_steps", self.n_obs_steps, "must be 1 (LeRobot's ACT reads one step)")
        for name in ("chunk_size", "n_action_steps", "dim_model", "n_heads", "dim_feedforward",
                     "latent_dim", "n_encoder_layers", "n_decoder_layers", "n_vae_encoder_layers"):
            _require_int(name, getattr(self, name), minimum=1)
        if self.n_action_steps > self.chunk_size:
            raise ConfigError(
                "n_action_steps", self.n_action_steps, f"must be <= chunk_size ({self.chunk_size})"
            )
        if self.temporal_ensemble_coeff is not None:
            if not isinstance(self.temporal_ensemble_coeff, (int, float)) or isinstance(
                self.temporal_ensemble_coeff, bool
            ):
                raise ConfigError("temporal_ensemble_coeff", self.temporal_ensemble_coeff, "a float or None")
            if self.n_action_steps != 1:
                raise ConfigError(
                    "n_action_steps",
                    self.n_action_steps,
                    "must be 1 when temporal_ensemble_coeff is set (the ensemble queries every step)",
                )
        if self.vision_backbone not in BACKBONES:
            raise ConfigError("vision_backbone", self.vision_backbone, f"one of {list(BACKBONES)}")
        if self.pretrained_backbone_weights is not None:
            raise ConfigError(
                "pretrained_backbone_weights",
                self.pretrained_backbone_weights,
                "must be None: act_equiv builds models offline with seeded weights",
            )
        if self.replace_final_stride_with_dilation not in (False, True, 0, 1):
            raise ConfigError("replace_final_stride_with_dilation", self.replace_final_stride_with_dilation,
                              "a bool")
        if self.replace_final_stride_with_dilation:
            raise ConfigError(
                "replace_final_stride_with_dilation",
                self.replace_final_stride_with_dilation,
                f"must be False for {self.vision_backbone}: dilation needs a Bottleneck ResNet "
                "(resnet50+), and BasicBlock ResNets raise in torchvision",
            )
        if self.feedforward_activation == "glu":
            raise ConfigError(
                "feedforward_activation",
                "glu",
                f"one of {list(ACTIVATIONS)}; 'glu' halves the feed-forward width so linear2 gets the "
                "wrong input size (LeRobot's config accepts it, its model crashes)",
            )
        if self.feedforward_activation not in ACTIVATIONS:
            raise ConfigError("feedforward_activation", self.feedforward_activation, f"one of {list(ACTIVATIONS)}")
        if self.dim_model % self.n_heads:
            raise ConfigError(
                "dim_model", self.dim_model, f"must be divisible by n_heads ({self.n_heads})"
            )
        if self.dim_model % 4:
            raise ConfigError(
                "dim_model", self.dim_model, "must be divisible by 4 (the 2-D sinusoid interleaves sin/cos "
                "over dim_model // 2 channels per axis)"
            )
        for name in ("pre_norm", "use_vae"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, getattr(self, name), "a bool")
        if not isinstance(self.dropout, (int, float)) or isinstance(self.dropout, bool) or not (
            0.0 <= self.dropout < 1.0
        ):
            raise ConfigError("dropout", self.dropout, "a float in [0, 1)")
        if not isinstance(self.kl_weight, (int, float)) or isinstance(self.kl_weight, bool) or self.kl_weight < 0:
            raise ConfigError("kl_weight", self.kl_weight, "a float >= 0")
        for name in ("optimizer_lr", "optimizer_weight_decay", "optimizer_lr_backbone"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ConfigError(name, value, "a float >= 0 (LeRobot's AdamW preset)")

    # -- LeRobot's feature properties ---------------------------------------------------------------
    @property
    def robot_state_feature(self) -> PolicyFeature | None:
        return self._features["state"]

    @property
    def env_state_feature(self) -> PolicyFeature | None:
        return self._features["env"]

    @property
    def image_features(self) -> dict[str, PolicyFeature]:
        return self._features["images"]

    @property
    def action_feature(self) -> PolicyFeature:
        return self._features["action"]

    # -- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["camera_shapes"] = [list(shape) for shape in self.camera_shapes]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ACTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(unknown[0], data[unknown[0]], f"not an ACTConfig field; fields are {sorted(known)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ACTConfig:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> ACTConfig:
        return dataclasses.replace(self, **changes)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_int(name: str, value: Any, minimum: int, allowed: str | None = None) -> None:
    if not _is_int(value) or value < minimum:
        raise ConfigError(name, value, allowed or f"an int >= {minimum}")
