"""Regenerate ``lerobot_act_resnet18_state_dict.json`` from the real LeRobot ACT.

Why this file exists: act_equiv's own ACT must have exactly LeRobot's
``state_dict`` keys and tensor shapes, so that a checkpoint saved by either
implementation loads into the other with ``load_state_dict(strict=True)``.
The JSON next to this script is the reference for that check. It was produced
once from LeRobot, so act_equiv's test suite does not need LeRobot installed.

The model is LeRobot's inner ``ACT(config)``; ``ACTPolicy`` holds it as
``self.model``, so a policy checkpoint has the same keys prefixed ``model.``.
It is built offline with ``pretrained_backbone_weights=None``: ResNet18
backbone, VAE enabled, all other ACT fields at LeRobot's defaults, a 14-dim
robot state, a 10-dim environment state, two cameras (3x96x128 and 3x64x64)
and a 14-dim action.

``n_parameters`` counts ``model.parameters()`` only; the ``state_dict`` also
holds buffers (FrozenBatchNorm2d statistics, ``vae_encoder_pos_enc``).

Regenerate (from the repository root, in a venv with lerobot installed)::

    python tests/data/make_lerobot_state_dict_keys.py
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACT

OUT_PATH = Path(__file__).with_name("lerobot_act_resnet18_state_dict.json")

STATE_DIM = 14
ENV_STATE_DIM = 10
CAMERA_SHAPES: dict[str, tuple[int, int, int]] = {
    "observation.images.top": (3, 96, 128),
    "observation.images.wrist": (3, 64, 64),
}
ACTION_DIM = 14


def build_config() -> ACTConfig:
    """Return the reference ACTConfig (LeRobot defaults, no pretrained weights)."""
    input_features: dict[str, PolicyFeature] = {
        "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,)),
        "observation.environment_state": PolicyFeature(type=FeatureType.ENV, shape=(ENV_STATE_DIM,)),
    }
    for key, shape in CAMERA_SHAPES.items():
        input_features[key] = PolicyFeature(type=FeatureType.VISUAL, shape=shape)
    output_features = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))}
    return ACTConfig(
        input_features=input_features,
        output_features=output_features,
        vision_backbone="resnet18",
        pretrained_backbone_weights=None,
        use_vae=True,
        device="cpu",
    )


def main() -> None:
    """Build LeRobot's ACT and write its state_dict key/shape listing as JSON."""
    config = build_config()
    model = ACT(config)
    state_dict = {key: list(tensor.shape) for key, tensor in sorted(model.state_dict().items())}
    n_parameters = sum(p.numel() for p in model.parameters())
    payload = {
        "produced_by": (
            f"LeRobot {version('lerobot')} inner ACT(config) state_dict, torch {torch.__version__}, "
            "by `python tests/data/make_lerobot_state_dict_keys.py`."
        ),
        "config": {
            "vision_backbone": config.vision_backbone,
            "use_vae": config.use_vae,
            "state_dim": STATE_DIM,
            "env_state_dim": ENV_STATE_DIM,
            "camera_shapes": [list(shape) for shape in CAMERA_SHAPES.values()],
            "action_dim": ACTION_DIM,
            "dim_model": config.dim_model,
            "chunk_size": config.chunk_size,
            "latent_dim": config.latent_dim,
            "n_encoder_layers": config.n_encoder_layers,
            "n_decoder_layers": config.n_decoder_layers,
            "n_vae_encoder_layers": config.n_vae_encoder_layers,
            "dim_feedforward": config.dim_feedforward,
            "n_heads": config.n_heads,
        },
        "state_dict": state_dict,
        "n_parameters": n_parameters,
        "n_keys": len(state_dict),
    }
    OUT_PATH.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {OUT_PATH}: {len(state_dict)} keys, {n_parameters} parameters")


if __name__ == "__main__":
    main()
