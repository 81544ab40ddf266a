"""The frozen reference: LeRobot's list-built encoder input (`list(...)`, `.append`, `.extend`, `torch.stack`).

Keep this exactly as LeRobot writes it; it is what every other form is judged against.
"""

from __future__ import annotations

import torch
from torch import Tensor

from act_equiv.config import OBS_ENV_STATE, OBS_IMAGES, OBS_STATE
from act_equiv.models.base import ACTBase, Batch


class LegacyACT(ACTBase):
    def encoder_inputs(self, batch: Batch, latent_sample: Tensor) -> tuple[Tensor, Tensor]:
        encoder_in_tokens = [self.encoder_latent_input_proj(latent_sample)]
        encoder_in_pos_embed = list(self.encoder_1d_feature_pos_embed.weight.unsqueeze(1))
        if self.config.robot_state_feature:
            encoder_in_tokens.append(self.encoder_robot_state_input_proj(batch[OBS_STATE]))
        if self.config.env_state_feature:
            encoder_in_tokens.append(self.encoder_env_state_input_proj(batch[OBS_ENV_STATE]))
        if self.config.image_features:
            for img in batch[OBS_IMAGES]:
                cam_features = self.backbone(img)["feature_map"]
                cam_pos_embed = self.encoder_cam_feat_pos_embed(cam_features).to(dtype=cam_features.dtype)
                cam_features = self.encoder_img_feat_input_proj(cam_features)
                # "b c h w -> (h w) b c"
                cam_features = cam_features.permute(2, 3, 0, 1).flatten(0, 1)
                cam_pos_embed = cam_pos_embed.permute(2, 3, 0, 1).flatten(0, 1)
                encoder_in_tokens.extend(list(cam_features))
                encoder_in_pos_embed.extend(list(cam_pos_embed))
        return torch.stack(encoder_in_tokens, dim=0), torch.stack(encoder_in_pos_embed, dim=0)
