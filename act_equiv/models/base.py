"""The ACT network minus one step: how the encoder's input tokens are assembled.

`ACTBase` owns every submodule (LeRobot's names, so state dicts are interchangeable), the latent
(VAE or zeros) and the transformer/decoder/head. The legacy and concat forms subclass it and implement
`encoder_inputs`, the only place where they differ.

Deviations from LeRobot 0.6.1, each the intended behaviour of a latent LeRobot bug:
- the zero latent takes dtype and device from `encoder_latent_input_proj.weight` (LeRobot hard-codes
  float32 and reads the device from `batch["observation.state"]`, a KeyError without a state feature);
- the VAE's cls/state padding mask takes its device from `batch["action_is_pad"]` (same KeyError).
"""

from __future__ import annotations

from itertools import chain

import torch
from torch import Tensor, nn

from act_equiv.config import ACTION, ACTION_IS_PAD, OBS_ENV_STATE, OBS_IMAGES, OBS_STATE, ACTConfig
from act_equiv.models.backbone import ResNetBackbone
from act_equiv.models.layers import (
    ACTDecoder,
    ACTEncoder,
    ACTSinusoidalPositionEmbedding2d,
    create_sinusoidal_pos_embedding,
)

Batch = dict[str, "Tensor | list[Tensor]"]
ACTOutput = tuple[Tensor, "tuple[Tensor, Tensor] | tuple[None, None]"]


class ACTBase(nn.Module):
    def __init__(self, config: ACTConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.dim_model
        if config.use_vae:
            self.vae_encoder = ACTEncoder(config, is_vae_encoder=True)
            self.vae_encoder_cls_embed = nn.Embedding(1, dim)
            if config.robot_state_feature:
                self.vae_encoder_robot_state_input_proj = nn.Linear(config.robot_state_feature.shape[0], dim)
            self.vae_encoder_action_input_proj = nn.Linear(config.action_feature.shape[0], dim)
            self.vae_encoder_latent_output_proj = nn.Linear(dim, config.latent_dim * 2)
            n_vae_tokens = 1 + config.chunk_size + (1 if config.robot_state_feature else 0)
            self.register_buffer(
                "vae_encoder_pos_enc", create_sinusoidal_pos_embedding(n_vae_tokens, dim).unsqueeze(0)
            )
        if config.image_features:
            self.backbone = ResNetBackbone(config.vision_backbone)
        self.encoder = ACTEncoder(config)
        self.decoder = ACTDecoder(config)
        if config.robot_state_feature:
            self.encoder_robot_state_input_proj = nn.Linear(config.robot_state_feature.shape[0], dim)
        if config.env_state_feature:
            self.encoder_env_state_input_proj = nn.Linear(config.env_state_feature.shape[0], dim)
        self.encoder_latent_input_proj = nn.Linear(config.latent_dim, dim)
        if config.image_features:
            self.encoder_img_feat_input_proj = nn.Conv2d(self.backbone.out_channels, dim, kernel_size=1)
        n_1d_tokens = 1 + (1 if config.robot_state_feature else 0) + (1 if config.env_state_feature else 0)
        self.encoder_1d_feature_pos_embed = nn.Embedding(n_1d_tokens, dim)
        if config.image_features:
            self.encoder_cam_feat_pos_embed = ACTSinusoidalPositionEmbedding2d(dim // 2)
        self.decoder_pos_embed = nn.Embedding(config.chunk_size, dim)
        self.action_head = nn.Linear(dim, config.action_feature.shape[0])
        for p in chain(self.encoder.parameters(), self.decoder.parameters()):
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    # -- the step the forms implement -------------------------------------------------------------
    def encoder_inputs(self, batch: Batch, latent_sample: Tensor) -> tuple[Tensor, Tensor]:
        """Return (tokens (S, B, D), position embeddings (S, 1, D)) in LeRobot's token order."""
        raise NotImplementedError

    # -- shared steps ---------------------------------------------------------------------------
    def batch_size(self, batch: Batch) -> int:
        """From the first camera, else from the environment state (LeRobot's rule)."""
        return batch[OBS_IMAGES][0].shape[0] if OBS_IMAGES in batch else batch[OBS_ENV_STATE].shape[0]

    def latent(self, batch: Batch, batch_size: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(latent sample, mu, log_sigma_x2): the VAE's sample in training with actions, else zeros."""
        if self.config.use_vae and ACTION in batch and self.training:
            cls_embed = self.vae_encoder_cls_embed.weight.unsqueeze(0).expand(batch_size, -1, -1)
            parts = [cls_embed]
            if self.config.robot_state_feature:
                parts.append(self.vae_encoder_robot_state_input_proj(batch[OBS_STATE]).unsqueeze(1))
            n_unpadded = len(parts)  # cls (and state) tokens are never padding
            parts.append(self.vae_encoder_action_input_proj(batch[ACTION]))
            vae_encoder_input = torch.cat(parts, dim=1)
            pos_embed = self.vae_encoder_pos_enc.clone().detach()
            action_is_pad = batch[ACTION_IS_PAD]
            cls_joint_is_pad = torch.full((batch_size, n_unpadded), False, device=action_is_pad.device)
            key_padding_mask = torch.cat([cls_joint_is_pad, action_is_pad], dim=1)
            cls_token_out = self.vae_encoder(
                vae_encoder_input.permute(1, 0, 2),
                pos_embed=pos_embed.permute(1, 0, 2),
                key_padding_mask=key_padding_mask,
            )[0]
            latent_pdf_params = self.vae_encoder_latent_output_proj(cls_token_out)
            mu = latent_pdf_params[:, : self.config.latent_dim]
            log_sigma_x2 = latent_pdf_params[:, self.config.latent_dim :]
            return mu + log_sigma_x2.div(2).exp() * torch.randn_like(mu), mu, log_sigma_x2
        weight = self.encoder_latent_input_proj.weight
        zeros = torch.zeros(batch_size, self.config.latent_dim, dtype=weight.dtype, device=weight.device)
        return zeros, None, None

    def decode(self, tokens: Tensor, pos_embed: Tensor, batch_size: int) -> Tensor:
        """Transformer encoder, decoder over zero queries, action head: (B, chunk_size, action_dim)."""
        encoder_out = self.encoder(tokens, pos_embed=pos_embed)
        decoder_in = torch.zeros(
            (self.config.chunk_size, batch_size, self.config.dim_model),
            dtype=pos_embed.dtype,
            device=pos_embed.device,
        )
        decoder_out = self.decoder(
            decoder_in,
            encoder_out,
            encoder_pos_embed=pos_embed,
            decoder_pos_embed=self.decoder_pos_embed.weight.unsqueeze(1),
        )
        return self.action_head(decoder_out.transpose(0, 1))

    def forward(self, batch: Batch) -> ACTOutput:
        """LeRobot's contract: returns (actions (B, chunk_size, action_dim), (mu, log_sigma_x2))."""
        if self.config.use_vae and self.training and ACTION not in batch:
            raise KeyError(f"batch[{ACTION!r}] is required when training with use_vae=True")
        batch_size = self.batch_size(batch)
        latent_sample, mu, log_sigma_x2 = self.latent(batch, batch_size)
        tokens, pos_embed = self.encoder_inputs(batch, latent_sample)
        return self.decode(tokens, pos_embed, batch_size), (mu, log_sigma_x2)
