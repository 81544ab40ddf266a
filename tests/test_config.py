"""ACTConfig: LeRobot's defaults, every validation rule's error (field + allowed values), feature properties,
and lossless round-trips through dict and JSON."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from act_equiv import ACTConfig, ConfigError
from act_equiv.config import BACKBONES, TINY_BACKBONE, FeatureType

# A valid base that every invalid case below changes in one place.
BASE: dict[str, Any] = {
    "vision_backbone": TINY_BACKBONE,
    "state_dim": 4,
    "env_state_dim": 3,
    "camera_shapes": ((3, 32, 32),),
    "action_dim": 2,
    "chunk_size": 4,
    "n_action_steps": 4,
    "dim_model": 16,
    "n_heads": 2,
    "dim_feedforward": 32,
    "n_encoder_layers": 1,
    "n_decoder_layers": 1,
    "n_vae_encoder_layers": 1,
    "latent_dim": 4,
}


def test_base_is_valid() -> None:
    ACTConfig(**BASE)


def test_lerobot_defaults() -> None:
    config = ACTConfig(camera_shapes=[(3, 96, 128)])
    expected = {
        "n_obs_steps": 1,
        "chunk_size": 100,
        "n_action_steps": 100,
        "vision_backbone": "resnet18",
        "pretrained_backbone_weights": None,
        "replace_final_stride_with_dilation": False,
        "pre_norm": False,
        "dim_model": 512,
        "n_heads": 8,
        "dim_feedforward": 3200,
        "feedforward_activation": "relu",
        "n_encoder_layers": 4,
        "n_decoder_layers": 1,
        "use_vae": True,
        "latent_dim": 32,
        "n_vae_encoder_layers": 4,
        "temporal_ensemble_coeff": None,
        "dropout": 0.1,
        "kl_weight": 10.0,
    }
    assert {name: getattr(config, name) for name in expected} == expected


def test_config_error_is_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
    err = ConfigError("dim_model", 3, "an int")
    assert (err.field, err.value, err.allowed) == ("dim_model", 3, "an int")
    assert str(err) == "ACTConfig.dim_model=3 is invalid: an int"


# (id, changes to BASE, expected .field, substrings the message must contain)
INVALID: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
    ("glu", {"feedforward_activation": "glu"}, "feedforward_activation", ("'glu'", "relu", "gelu", "linear2")),
    ("unknown-activation", {"feedforward_activation": "tanh"}, "feedforward_activation", ("relu", "gelu")),
    (
        "dilation-resnet18",
        {"vision_backbone": "resnet18", "replace_final_stride_with_dilation": True},
        "replace_final_stride_with_dilation",
        ("must be False", "resnet18", "Bottleneck"),
    ),
    (
        "dilation-resnet34",
        {"vision_backbone": "resnet34", "replace_final_stride_with_dilation": True},
        "replace_final_stride_with_dilation",
        ("must be False", "resnet34"),
    ),
    (
        "dilation-not-bool",
        {"replace_final_stride_with_dilation": "yes"},
        "replace_final_stride_with_dilation",
        ("a bool",),
    ),
    ("dim-model-vs-heads", {"dim_model": 20, "n_heads": 8}, "dim_model", ("divisible by n_heads (8)",)),
    ("dim-model-vs-4", {"dim_model": 18, "n_heads": 2}, "dim_model", ("divisible by 4",)),
    ("dim-model-vs-4-odd-heads", {"dim_model": 6, "n_heads": 3}, "dim_model", ("divisible by 4",)),
    ("n-obs-steps-2", {"n_obs_steps": 2}, "n_obs_steps", ("must be 1",)),
    ("n-obs-steps-0", {"n_obs_steps": 0}, "n_obs_steps", ("must be 1",)),
    ("n-action-steps-gt-chunk", {"chunk_size": 4, "n_action_steps": 5}, "n_action_steps", ("<= chunk_size (4)",)),
    (
        "ensemble-needs-one-step",
        {"temporal_ensemble_coeff": 0.01, "n_action_steps": 2},
        "n_action_steps",
        ("must be 1", "temporal_ensemble_coeff"),
    ),
    (
        "ensemble-coeff-str",
        {"temporal_ensemble_coeff": "0.01", "n_action_steps": 1},
        "temporal_ensemble_coeff",
        ("a float or None",),
    ),
    (
        "ensemble-coeff-bool",
        {"temporal_ensemble_coeff": True, "n_action_steps": 1},
        "temporal_ensemble_coeff",
        ("a float or None",),
    ),
    ("backbone-resnet50", {"vision_backbone": "resnet50"}, "vision_backbone", tuple(BACKBONES)),
    ("backbone-vit", {"vision_backbone": "vit_b_16"}, "vision_backbone", tuple(BACKBONES)),
    ("no-camera-no-env", {"camera_shapes": (), "env_state_dim": None}, "camera_shapes", ("env_state_dim",)),
    ("one-channel-camera", {"camera_shapes": ((1, 32, 32),)}, "camera_shapes[0]", ("3 channels",)),
    ("one-channel-second-camera", {"camera_shapes": ((3, 32, 32), (1, 32, 32))}, "camera_shapes[1]", ("3 channels",)),
    ("four-channel-camera", {"camera_shapes": ((4, 32, 32),)}, "camera_shapes[0]", ("3 channels",)),
    ("camera-2d", {"camera_shapes": ((32, 32),)}, "camera_shapes[0]", ("(C, H, W)", "positive ints")),
    ("camera-float", {"camera_shapes": ((3, 32.0, 32),)}, "camera_shapes[0]", ("(C, H, W)", "positive ints")),
    ("camera-zero", {"camera_shapes": ((3, 0, 32),)}, "camera_shapes[0]", ("(C, H, W)", "positive ints")),
    ("dim-model-float", {"dim_model": 16.0}, "dim_model", ("an int >= 1",)),
    ("dim-model-bool", {"dim_model": True}, "dim_model", ("an int >= 1",)),
    ("chunk-size-str", {"chunk_size": "4"}, "chunk_size", ("an int >= 1",)),
    ("chunk-size-zero", {"chunk_size": 0, "n_action_steps": 0}, "chunk_size", ("an int >= 1",)),
    ("n-heads-zero", {"n_heads": 0}, "n_heads", ("an int >= 1",)),
    ("dim-feedforward-float", {"dim_feedforward": 32.5}, "dim_feedforward", ("an int >= 1",)),
    ("latent-dim-neg", {"latent_dim": -1}, "latent_dim", ("an int >= 1",)),
    ("n-encoder-layers-zero", {"n_encoder_layers": 0}, "n_encoder_layers", ("an int >= 1",)),
    ("n-decoder-layers-float", {"n_decoder_layers": 1.0}, "n_decoder_layers", ("an int >= 1",)),
    ("n-vae-layers-bool", {"n_vae_encoder_layers": False}, "n_vae_encoder_layers", ("an int >= 1",)),
    ("action-dim-zero", {"action_dim": 0}, "action_dim", ("an int >= 1",)),
    ("action-dim-float", {"action_dim": 2.0}, "action_dim", ("an int >= 1",)),
    ("state-dim-float", {"state_dim": 3.5}, "state_dim", ("a positive int or None",)),
    ("state-dim-zero", {"state_dim": 0}, "state_dim", ("a positive int or None",)),
    ("env-dim-bool", {"env_state_dim": True}, "env_state_dim", ("a positive int or None",)),
    ("use-vae-int", {"use_vae": 1}, "use_vae", ("a bool",)),
    ("use-vae-str", {"use_vae": "true"}, "use_vae", ("a bool",)),
    ("pre-norm-none", {"pre_norm": None}, "pre_norm", ("a bool",)),
    ("dropout-one", {"dropout": 1.0}, "dropout", ("[0, 1)",)),
    ("dropout-neg", {"dropout": -0.1}, "dropout", ("[0, 1)",)),
    ("dropout-big", {"dropout": 1.5}, "dropout", ("[0, 1)",)),
    ("dropout-bool", {"dropout": False}, "dropout", ("[0, 1)",)),
    ("dropout-str", {"dropout": "0.1"}, "dropout", ("[0, 1)",)),
    ("kl-weight-neg", {"kl_weight": -1.0}, "kl_weight", (">= 0",)),
    ("kl-weight-bool", {"kl_weight": True}, "kl_weight", (">= 0",)),
    (
        "pretrained-weights",
        {"pretrained_backbone_weights": "ResNet18_Weights.IMAGENET1K_V1"},
        "pretrained_backbone_weights",
        ("must be None",),
    ),
]


@pytest.mark.parametrize(
    ("changes", "field", "fragments"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_invalid_config_raises(changes: dict[str, Any], field: str, fragments: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as info:
        ACTConfig(**{**BASE, **changes})
    err = info.value
    assert isinstance(err, ValueError)
    assert err.field == field
    message = str(err)
    assert message.startswith(f"ACTConfig.{field}="), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_invalid_value_is_reported() -> None:
    with pytest.raises(ConfigError) as info:
        ACTConfig(**{**BASE, "dropout": 1.5})
    assert info.value.value == 1.5
    assert "1.5" in str(info.value)


def test_default_config_needs_an_input() -> None:
    """LeRobot's defaults alone describe no camera and no environment state: rejected."""
    with pytest.raises(ConfigError) as info:
        ACTConfig()
    assert info.value.field == "camera_shapes"


def test_replace_validates() -> None:
    config = ACTConfig(**BASE)
    with pytest.raises(ConfigError) as info:
        config.replace(feedforward_activation="glu")
    assert info.value.field == "feedforward_activation"
    assert config.replace(dim_model=32).dim_model == 32


def test_from_dict_unknown_key() -> None:
    data = {**ACTConfig(**BASE).to_dict(), "dim_modle": 16}
    with pytest.raises(ConfigError) as info:
        ACTConfig.from_dict(data)
    err = info.value
    assert err.field == "dim_modle"
    assert "not an ACTConfig field" in str(err)
    assert "dim_model" in str(err)  # the allowed field names are listed


def test_from_json_unknown_key() -> None:
    with pytest.raises(ConfigError) as info:
        ACTConfig.from_json(json.dumps({**ACTConfig(**BASE).to_dict(), "input_features": {}}))
    assert info.value.field == "input_features"


def test_from_dict_validates() -> None:
    data = {**ACTConfig(**BASE).to_dict(), "n_obs_steps": 2}
    with pytest.raises(ConfigError) as info:
        ACTConfig.from_dict(data)
    assert info.value.field == "n_obs_steps"


VALID: dict[str, dict[str, Any]] = {
    "base": {},
    "env-only": {"camera_shapes": (), "state_dim": None},
    "camera-only": {"env_state_dim": None, "state_dim": None},
    "two-cameras": {"camera_shapes": ((3, 96, 128), (3, 64, 64))},
    "ensemble": {"temporal_ensemble_coeff": 0.01, "n_action_steps": 1},
    "ensemble-negative": {"temporal_ensemble_coeff": -0.5, "n_action_steps": 1},
    "ensemble-int": {"temporal_ensemble_coeff": 0, "n_action_steps": 1},
    "steps-equal-chunk": {"chunk_size": 3, "n_action_steps": 3},
    "gelu-prenorm-novae": {"feedforward_activation": "gelu", "pre_norm": True, "use_vae": False},
    "dropout-zero": {"dropout": 0.0},
    "dropout-int-zero": {"dropout": 0},
    "resnet18": {"vision_backbone": "resnet18"},
    "resnet34": {"vision_backbone": "resnet34"},
    "camera-list": {"camera_shapes": [[3, 40, 56]]},
}


@pytest.mark.parametrize("changes", list(VALID.values()), ids=list(VALID))
def test_round_trip(changes: dict[str, Any]) -> None:
    config = ACTConfig(**{**BASE, **changes})
    assert isinstance(config.camera_shapes, tuple)
    assert all(isinstance(shape, tuple) for shape in config.camera_shapes)

    data = config.to_dict()
    assert set(data) == {f.name for f in dataclasses.fields(ACTConfig)}
    assert ACTConfig.from_dict(data) == config

    text = config.to_json()
    assert json.loads(text) == json.loads(json.dumps(data))  # plain JSON, nothing lost
    assert ACTConfig.from_json(text) == config
    assert ACTConfig.from_json(text).to_json() == text  # stable text


def test_to_dict_is_a_copy() -> None:
    config = ACTConfig(**BASE)
    data = config.to_dict()
    data["camera_shapes"][0][1] = 999
    data["dim_model"] = 999
    assert config.camera_shapes == ((3, 32, 32),)
    assert config.dim_model == 16


def test_feature_properties() -> None:
    config = ACTConfig(**{**BASE, "camera_shapes": ((3, 96, 128), (3, 64, 64))})
    assert config.robot_state_feature.type == FeatureType.STATE
    assert config.robot_state_feature.shape == (4,)
    assert config.env_state_feature.type == FeatureType.ENV
    assert config.env_state_feature.shape == (3,)
    assert config.action_feature.type == FeatureType.ACTION
    assert config.action_feature.shape == (2,)
    images = config.image_features
    assert list(images) == ["observation.images.cam0", "observation.images.cam1"]  # camera order kept
    assert [f.shape for f in images.values()] == [(3, 96, 128), (3, 64, 64)]
    assert all(f.type == FeatureType.VISUAL for f in images.values())


def test_absent_features() -> None:
    config = ACTConfig(**{**BASE, "state_dim": None, "camera_shapes": ()})
    assert config.robot_state_feature is None
    assert config.image_features == {}
    assert config.env_state_feature is not None
