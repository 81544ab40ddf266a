"""The tensor-concat form: whole token blocks joined by one `torch.cat`, so dynamo sees a handful of ops.

Same values as the legacy form by construction: each block is the legacy's tokens before they were split
into per-token tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from act_equiv.config import OBS_ENV_STATE, OBS_IMAGES, OBS_STATE
from act_equiv.models.base import ACTBase, Batch


def _sequence_first(feature_map: Tensor) -> Tensor:
    """(B, C, H, W) -> (H*W, B, C), row-major over (h, w)."""
    return feature_map.flatten(2).permute(2, 0, 1)


class ACT(ACTBase):
    def encoder_inputs(self, batch: Batch, latent_sample: Tensor) -> tuple[Tensor, Tensor]:
        tokens = [self.encoder_latent_input_proj(latent_sample).unsqueeze(0)]
        if self.config.robot_state_feature:
            tokens.append(self.encoder_robot_state_input_proj(batch[OBS_STATE]).unsqueeze(0))
        if self.config.env_state_feature:
            tokens.append(self.encoder_env_state_input_proj(batch[OBS_ENV_STATE]).unsqueeze(0))
        pos_embed = [self.encoder_1d_feature_pos_embed.weight.unsqueeze(1)]
        for img in batch[OBS_IMAGES] if self.config.image_features else ():
            feature_map = self.backbone(img)["feature_map"]
            pos_embed.append(_sequence_first(self.encoder_cam_feat_pos_embed(feature_map).to(feature_map.dtype)))
            tokens.append(_sequence_first(self.encoder_img_feat_input_proj(feature_map)))
        return torch.cat(tokens), torch.cat(pos_embed)
