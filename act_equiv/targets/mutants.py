"""Mutants: realistic bugs a tensor-concat refactor of ACT can introduce, to prove the oracle catches them.

Each mutant is a small subclass of the concat form (`act_equiv.models.ACT`) that overrides one step
(`encoder_inputs`, `latent`, `decode`, `batch_size` or `forward`) with the bug marked `# BUG`. None touches
the reference or the oracle, and each keeps LeRobot's state-dict layout, so the reference weights load
`strict=True`. Every mutant is the built-in target `mutant:<name>` (`load`):

    act-equiv check --target mutant:cameras_reversed_tokens

`needs` says which configurations can show the bug at all; a test that never draws them cannot kill it.
Reordering camera tokens *together with* their position embeddings is an equivalent refactor (ACT_SPEC.md),
so no mutant does that: every mutant here is a real bug, wrong beyond rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from act_equiv import testing
from act_equiv.config import ACTION, ACTION_IS_PAD, OBS_ENV_STATE, OBS_IMAGES, OBS_STATE, ACTConfig
from act_equiv.errors import TargetError
from act_equiv.models import ACT
from act_equiv.models.base import Batch
from act_equiv.models.layers import ACTEncoderLayer
from act_equiv.targets.target import Target

__all__ = [
    "MUTANTS",
    "ActionHeadSnapshotStale",
    "BackboneMicroBatched",
    "CamPosEmbedShared",
    "Camera0FeaturesReused",
    "CameraFeaturesMemoisedByAddress",
    "CamerasReversedTokens",
    "DecoderPosEmbedDropped",
    "DeepLayersDropResidual",
    "DeviceFromState",
    "DropoutInEval",
    "FlattenWHTokens",
    "GraphBreak",
    "LatentAfterStateEnv",
    "LayerNormAffineDroppedInEval",
    "Mutant",
    "OutputReshapeNotTranspose",
    "Pos1dShifted",
    "RecompilePerBatchSize",
    "ReshapeNotPermute",
    "SoftmaxUnshiftedFloat32",
    "StateClampedInPlace",
    "StateEnvSwapped",
    "VAEClsMasked",
    "VAEPadMaskIgnored",
    "VAEPadMaskShifted",
    "VAEReparamSigmaSquared",
    "VAESkippedInTraining",
    "ZeroLatentFloat32",
    "load",
]


@dataclass(frozen=True)
class Mutant:
    name: str
    cls: type[ACT]
    description: str
    needs: str
    """The configuration features a case must have for the bug to change anything."""
    compiled: bool = False
    """Only a compiled comparison can see it; an eager-only check cannot."""
    dtype: str = "float32"
    """The model and input dtype the gate must run in to see it (the mutant run uses it)."""

    @property
    def target(self) -> str:
        return f"mutant:{self.name}"


MUTANTS: dict[str, Mutant] = {}


def _mutant(name: str, needs: str, compiled: bool = False, dtype: str = "float32") -> Callable[[type[ACT]], type[ACT]]:
    """Catalogue a mutant class; its description is its docstring's first paragraph."""

    def add(cls: type[ACT]) -> type[ACT]:
        paragraph = (cls.__doc__ or "").strip().split("\n\n")[0]
        description = " ".join(line.strip() for line in paragraph.splitlines())
        MUTANTS[name] = Mutant(name, cls, description, needs, compiled, dtype)
        return cls

    return add


# -- pieces of the correct concat form, shared by the mutants that change something else -------------------------
def _seq_first(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (H*W, B, C), row-major over (h, w): the correct flattening."""
    return x.flatten(2).permute(2, 0, 1)


def _state_env(model: ACT, batch: Batch) -> list[Tensor]:
    """The state and env tokens (those present), each (1, B, D)."""
    tokens = []
    if model.config.robot_state_feature:
        tokens.append(model.encoder_robot_state_input_proj(batch[OBS_STATE]).unsqueeze(0))
    if model.config.env_state_feature:
        tokens.append(model.encoder_env_state_input_proj(batch[OBS_ENV_STATE]).unsqueeze(0))
    return tokens


def _cameras(model: ACT, batch: Batch) -> list[Tensor]:
    return list(batch[OBS_IMAGES]) if model.config.image_features else []


def _camera(model: ACT, img: Tensor) -> tuple[Tensor, Tensor]:
    """One camera's (tokens, pos embed), both sequence-first."""
    feature_map = model.backbone(img)["feature_map"]
    pos = model.encoder_cam_feat_pos_embed(feature_map).to(feature_map.dtype)
    return _seq_first(model.encoder_img_feat_input_proj(feature_map)), _seq_first(pos)


def _with_cameras(model: ACT, batch: Batch, tokens: list[Tensor], pos: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Append every camera's tokens and 2-D position embeddings, correctly, and join everything."""
    for img in _cameras(model, batch):
        cam_tokens, cam_pos = _camera(model, img)
        tokens.append(cam_tokens)
        pos.append(cam_pos)
    return torch.cat(tokens), torch.cat(pos)


def _pos_1d(model: ACT) -> Tensor:
    return model.encoder_1d_feature_pos_embed.weight.unsqueeze(1)


def _leading(model: ACT, batch: Batch, latent_sample: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """The tokens before the cameras (latent, then state and env, those present) and their 1-D position
    embeddings, correctly: the camera mutants start from these."""
    return [model.encoder_latent_input_proj(latent_sample).unsqueeze(0), *_state_env(model, batch)], [_pos_1d(model)]


# -- token order --------------------------------------------------------------------------------------------------
@_mutant("state_env_swapped", "state and env")
class StateEnvSwapped(ACT):
    """Env token placed before the state token; the 1-D position embeddings stay in slot order."""

    def encoder_inputs(self, batch: Batch, latent_sample: Tensor) -> tuple[Tensor, Tensor]:
        tokens = [self.encoder_latent_input_proj(latent_sample).unsqueeze(0), *_state_env(self, batch)[::-1]]  # BUG
        pos = [_pos_1d(self)]
        return _with_cameras(self, batch, tokens, pos)


@_mutant("latent_after_state_env", "state or env")
class LatentAfterStateEnv(ACT):
    """Latent token moved after the state/env tokens; position embedding row 0 still belongs to slot 0."""

    def encoder_inputs(self, batch: Batch, latent_sample: Tensor) -> tuple[Tensor, Tensor]:
        tokens = [*_state_env(self, batch), self.encoder_latent_input_proj(latent_sample).unsqueeze(0)]  # BUG
        pos = [_pos_1d(self)]
        return _with_cameras(self, batch, tokens, pos)


@_mutant("pos1d_shifted", "state or env")
class Pos1dShifted(ACT):
    """1-D position embedding rows shifted by one slot (`roll(1)`), as if a slot had been prepended."""

    def encoder_inputs(self, batch: Batch, latent_sample: Tensor) -> tuple[Tensor, Tensor]:
        tokens = [self.encoder_latent_input_proj(latent_sample).unsqueeze(0), *_state_env(self, batch)]
        pos = [_pos_1d(self).roll(1, dims=0)]  # BUG
        return _with_cameras(self, batch, tokens, pos)


# -- cameras ------------------------------------------------------------------------------------------------------
@_mutant("cameras_reversed_tokens", ">= 2 cameras (beyond rounding: whose feature maps differ or are > 1 cell)")
class CamerasReversedTokens(ACT):
    """Camera token blocks joined in reverse camera order, their position embeddings in camera order."""

    def encoder_inputs(self, batch: Batch, latent_sample: Tensor) -> tuple[Tensor, Tensor]:
        tokens, pos = _leading(self, batch, latent_sample)
        cams = [_camera(self, img) for img in _cameras(self, batch)]
        tokens += [cam_tokens for cam_tokens, _ in reversed(cams)]  # BUG: tokens reversed, pos embeds not
        pos += [cam_pos for _, cam_pos in cams]
        return torch.cat(tokens), torch.cat(pos)


@_mutant("camera0_features_reused", ">= 2 cameras")
class Camera0FeaturesReused(ACT):
    """Every camera gets camera 0's feature map (the loop indexes the image list with 0)."""

    def encoder_inputs(self, batch: Batch, latent_sample: Tensor) -> tuple[Tensor, Tensor]:
        tokens, pos = _leading(self, batch, latent_sample)
        images = _cameras(self, batch)
        for _ in images:
            cam_tokens, cam_pos = _camera(self, images[0])  # BUG: images[0] instead of the loop's image
            tokens.append(cam_tokens)
            pos.append(cam_pos)
        return torch.cat(tokens), torch.cat(pos)


@_mutant("flatten_wh_tokens", "a camera whose feature map is > 1 cell in both sides (image sides >= 48)")
class FlattenWHTokens(ACT):
    """Camera tokens flattened "(w h) b c", their 2-D position embeddings "(h w) b c"."""

    def encoder_inputs(self, batch: Batch, latent_sample: Tensor) -> tuple[Tensor, Tensor]:
        tokens, pos = _leading(self, batch, latent_sample)
        for img in _cameras(self, batch):
            feature_map = self.backbone(img)["feature_map"]
            cam_pos = self.encoder_cam_feat_pos_embed(feature_map).to(feature_map.dtype)
            tokens.append(self.encoder_img_feat_input_proj(feature_map).permute(3, 2, 0, 1).flatten(0, 1))  # BUG
            pos.append(_seq_first(cam_pos))
        return torch.cat(tokens), torch.cat(pos)


@_mutant("reshape_not_permute", "a camera whose feature map is > 1 cell (an image side >= 48)")
class ReshapeNotPermute(ACT):
    """(B, C, H*W) -> (H*W, B, C) by `.reshape` instead of `.permute`: channels and positions get mixed."""

    def encoder_inputs(self, batch: Batch, latent_sample: Tensor) -> tuple[Tensor, Tensor]:
        def seq_first(x: Tensor) -> Tensor:
            b, c, h, w = x.shape
            return x.flatten(2).reshape(h * w, b, c)  # BUG

        tokens, pos = _leading(self, batch, latent_sample)
        for img in _cameras(self, batch):
            feature_map = self.backbone(img)["feature_map"]
            pos.append(seq_first(self.encoder_cam_feat_pos_embed(feature_map).to(feature_map.dtype)))
            tokens.append(seq_first(self.encoder_img_feat_input_proj(feature_map)))
        return torch.cat(tokens), torch.cat(pos)


@_mutant("cam_pos_embed_shared", "cameras whose feature maps differ in size (different resolutions)")
class CamPosEmbedShared(ACT):
    """2-D position embedding hoisted out of the camera loop: built once for the largest map, cropped per camera.

    The sinusoid normalises positions by the map's size, so a crop of a larger table is not the smaller map's table.
    """

    def encoder_inputs(self, batch: Batch, latent_sample: Tensor) -> tuple[Tensor, Tensor]:
        tokens, pos = _leading(self, batch, latent_sample)
        maps = [self.backbone(img)["feature_map"] for img in _cameras(self, batch)]
        if maps:
            height, width = max(m.shape[2] for m in maps), max(m.shape[3] for m in maps)
            shared = self.encoder_cam_feat_pos_embed(maps[0].new_ones(1, 1, height, width))  # BUG: one table
        for feature_map in maps:
            h, w = feature_map.shape[2:]
            pos.append(_seq_first(shared[:, :, :h, :w].to(feature_map.dtype)))
            tokens.append(_seq_first(self.encoder_img_feat_input_proj(feature_map)))
        return torch.cat(tokens), torch.cat(pos)


# -- the VAE ------------------------------------------------------------------------------------------------------
class _VAELatent(ACT):
    """The concat form's latent step written out, with the two places refactors get wrong as methods.

    Not a mutant: with these defaults it is the correct latent (tests check it against the reference).
    """

    def key_padding_mask(self, action_is_pad: Tensor, n_unpadded: int) -> Tensor:
        cls_joint_is_pad = torch.full((action_is_pad.shape[0], n_unpadded), False, device=action_is_pad.device)
        return torch.cat([cls_joint_is_pad, action_is_pad], dim=1)

    def sample(self, mu: Tensor, log_sigma_x2: Tensor) -> Tensor:
        return mu + log_sigma_x2.div(2).exp() * torch.randn_like(mu)

    def latent(self, batch: Batch, batch_size: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
        if not (self.config.use_vae and ACTION in batch and self.training):
            return super().latent(batch, batch_size)
        parts = [self.vae_encoder_cls_embed.weight.unsqueeze(0).expand(batch_size, -1, -1)]
        if self.config.robot_state_feature:
            parts.append(self.vae_encoder_robot_state_input_proj(batch[OBS_STATE]).unsqueeze(1))
        mask = self.key_padding_mask(batch[ACTION_IS_PAD], len(parts))
        parts.append(self.vae_encoder_action_input_proj(batch[ACTION]))
        cls_out = self.vae_encoder(torch.cat(parts, dim=1).permute(1, 0, 2),
                                   pos_embed=self.vae_encoder_pos_enc.clone().detach().permute(1, 0, 2),
                                   key_padding_mask=mask)[0]
        params = self.vae_encoder_latent_output_proj(cls_out)
        mu, log_sigma_x2 = params[:, : self.config.latent_dim], params[:, self.config.latent_dim :]
        return self.sample(mu, log_sigma_x2), mu, log_sigma_x2


@_mutant("vae_pad_mask_ignored", "training with VAE, padded actions")
class VAEPadMaskIgnored(_VAELatent):
    """VAE encoder's key_padding_mask never marks padded actions (action_is_pad ignored)."""

    def key_padding_mask(self, action_is_pad: Tensor, n_unpadded: int) -> Tensor:
        return super().key_padding_mask(torch.zeros_like(action_is_pad), n_unpadded)  # BUG


@_mutant("vae_pad_mask_shifted", "training with VAE, padded actions")
class VAEPadMaskShifted(_VAELatent):
    """VAE key_padding_mask joined [action_is_pad, cls/state] instead of [cls/state, action_is_pad]."""

    def key_padding_mask(self, action_is_pad: Tensor, n_unpadded: int) -> Tensor:
        return super().key_padding_mask(action_is_pad, n_unpadded).roll(-n_unpadded, dims=1)  # BUG


@_mutant("vae_cls_masked", "training with VAE")
class VAEClsMasked(_VAELatent):
    """VAE key_padding_mask marks the cls (and state) tokens as padding (`torch.ones` for `torch.zeros`)."""

    def key_padding_mask(self, action_is_pad: Tensor, n_unpadded: int) -> Tensor:
        cls_joint_is_pad = torch.ones((action_is_pad.shape[0], n_unpadded), dtype=torch.bool,  # BUG
                                      device=action_is_pad.device)
        return torch.cat([cls_joint_is_pad, action_is_pad], dim=1)


@_mutant("vae_reparam_sigma_squared", "training with VAE")
class VAEReparamSigmaSquared(_VAELatent):
    """Reparameterisation scales the noise by exp(log_sigma_x2) (the variance), not exp(log_sigma_x2 / 2)."""

    def sample(self, mu: Tensor, log_sigma_x2: Tensor) -> Tensor:
        return mu + log_sigma_x2.exp() * torch.randn_like(mu)  # BUG


@_mutant("vae_skipped_in_training", "training with VAE")
class VAESkippedInTraining(ACT):
    """VAE never runs: the check looks for batch["actions"] (typo), so training uses the zero latent."""

    def latent(self, batch: Batch, batch_size: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
        return super().latent({k: v for k, v in batch.items() if k != ACTION}, batch_size)  # BUG


# -- decoder and output -------------------------------------------------------------------------------------------
@_mutant("decoder_pos_embed_dropped", "any")
class DecoderPosEmbedDropped(ACT):
    """Decoder called without its position embedding (`decoder_pos_embed` left at None)."""

    def decode(self, tokens: Tensor, pos_embed: Tensor, batch_size: int) -> Tensor:
        encoder_out = self.encoder(tokens, pos_embed=pos_embed)
        decoder_in = torch.zeros((self.config.chunk_size, batch_size, self.config.dim_model),
                                 dtype=pos_embed.dtype, device=pos_embed.device)
        decoder_out = self.decoder(decoder_in, encoder_out, encoder_pos_embed=pos_embed)  # BUG: no decoder_pos_embed
        return self.action_head(decoder_out.transpose(0, 1))


@_mutant("output_reshape_not_transpose", "batch > 1 and chunk_size > 1")
class OutputReshapeNotTranspose(ACT):
    """Decoder output (C, B, D) made batch-first by `.reshape(B, C, D)` instead of `.transpose(0, 1)`."""

    def decode(self, tokens: Tensor, pos_embed: Tensor, batch_size: int) -> Tensor:
        encoder_out = self.encoder(tokens, pos_embed=pos_embed)
        decoder_in = torch.zeros((self.config.chunk_size, batch_size, self.config.dim_model),
                                 dtype=pos_embed.dtype, device=pos_embed.device)
        decoder_out = self.decoder(decoder_in, encoder_out, encoder_pos_embed=pos_embed,
                                   decoder_pos_embed=self.decoder_pos_embed.weight.unsqueeze(1))
        return self.action_head(decoder_out.reshape(batch_size, self.config.chunk_size, -1))  # BUG


# -- device and dtype ---------------------------------------------------------------------------------------------
@_mutant("zero_latent_float32", "eval or no VAE, in a float64 (or half-precision) run", dtype="float64")
class ZeroLatentFloat32(ACT):
    """Zero latent hard-coded float32 (LeRobot 0.6.1's own bug): a float64/bf16 model gets a dtype mismatch."""

    def latent(self, batch: Batch, batch_size: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
        if self.config.use_vae and ACTION in batch and self.training:
            return super().latent(batch, batch_size)
        weight = self.encoder_latent_input_proj.weight
        return torch.zeros(batch_size, self.config.latent_dim, dtype=torch.float32, device=weight.device), None, None


@_mutant("device_from_state", "no state feature, eval or no VAE")
class DeviceFromState(ACT):
    """Zero latent takes its device from batch["observation.state"] (LeRobot 0.6.1's own bug): KeyError
    without a state feature."""

    def latent(self, batch: Batch, batch_size: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
        if self.config.use_vae and ACTION in batch and self.training:
            return super().latent(batch, batch_size)
        device = batch[OBS_STATE].device  # BUG
        weight = self.encoder_latent_input_proj.weight
        return torch.zeros(batch_size, self.config.latent_dim, dtype=weight.dtype, device=device), None, None


# -- compile hygiene ----------------------------------------------------------------------------------------------
@_mutant("graph_break", "any compiled comparison", compiled=True)
class GraphBreak(ACT):
    """A graph break in the forward (a debugging hook left in; LeRobot's `.item()` logging does the same)."""

    def forward(self, batch: Batch) -> tuple[Tensor, tuple[Tensor, Tensor] | tuple[None, None]]:
        testing.graph_break()  # BUG
        return super().forward(batch)


@_mutant("recompile_per_batch_size", "a compiled comparison in eval at >= 3 batch sizes", compiled=True)
class RecompilePerBatchSize(ACT):
    """Decoder's zero queries cached in a Python dict keyed by batch size: dynamo guards on the dict, so
    every new batch size recompiles, however dynamic the shapes."""

    def __init__(self, config: ACTConfig) -> None:
        super().__init__(config)
        self.decoder_in_cache: dict[tuple[int, torch.dtype], Tensor] = {}

    def decode(self, tokens: Tensor, pos_embed: Tensor, batch_size: int) -> Tensor:
        key = (batch_size, pos_embed.dtype)
        if key not in self.decoder_in_cache:  # BUG: a Python-side cache keyed by a shape
            self.decoder_in_cache[key] = torch.zeros((self.config.chunk_size, batch_size, self.config.dim_model),
                                                     dtype=pos_embed.dtype, device=pos_embed.device)
        encoder_out = self.encoder(tokens, pos_embed=pos_embed)
        decoder_out = self.decoder(self.decoder_in_cache[key], encoder_out, encoder_pos_embed=pos_embed,
                                   decoder_pos_embed=self.decoder_pos_embed.weight.unsqueeze(1))
        return self.action_head(decoder_out.transpose(0, 1))


@_mutant("dropout_in_eval", "eval with dropout > 0")
class DropoutInEval(ACT):
    """Encoder always in training mode (`self.encoder.train()` meant as `.train(self.training)`): its dropout
    runs in eval."""

    def decode(self, tokens: Tensor, pos_embed: Tensor, batch_size: int) -> Tensor:
        self.encoder.train()  # BUG
        return super().decode(tokens, pos_embed, batch_size)



# -- bugs that hid behind inputs, dtypes, init weights, depth, batch sizes and memory -----------------------------
@_mutant("state_clamped_in_place", "training with the robot state")
class StateClampedInPlace(ACT):
    """Training clamps the caller's robot state in place (`clamp_` meant on a copy): LeRobot's training loop
    re-uses that tensor, and the model's own outputs are those of the clamped state."""

    def forward(self, batch: Batch) -> tuple[Tensor, tuple[Tensor | None, Tensor | None]]:
        if self.training and OBS_STATE in batch:
            batch[OBS_STATE].clamp_(-0.5, 0.5)  # BUG
        return super().forward(batch)


def _softmax_unshifted(x: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None
                       ) -> Tensor:
    e = x.exp()  # BUG: no max subtraction, so exp overflows for logits above 88 in float32
    return e / e.sum(dim, keepdim=True)


@_mutant("softmax_unshifted_float32", "eval in float32 at large input magnitudes")
class SoftmaxUnshiftedFloat32(ACT):
    """Float32 eval takes a "fused" attention softmax without the max subtraction (NaN once logits pass 88), while
    float64 takes the stock path: a dtype-dependent path whose own float64 run cannot vouch for it."""

    def forward(self, batch: Batch) -> tuple[Tensor, tuple[Tensor | None, Tensor | None]]:
        if self.training or self.action_head.weight.dtype != torch.float32:
            return super().forward(batch)
        stock = F.softmax  # nn.MultiheadAttention calls torch.nn.functional's module-level softmax
        F.softmax = _softmax_unshifted
        try:
            return super().forward(batch)
        finally:
            F.softmax = stock


class _AffineFreeLayerNorm(nn.LayerNorm):
    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return super().forward(x)
        return F.layer_norm(x, self.normalized_shape, None, None, self.eps)  # BUG: weight and bias left out


@_mutant("layer_norm_affine_dropped_in_eval", "eval with weights away from their init values")
class LayerNormAffineDroppedInEval(ACT):
    """Eval normalises without every LayerNorm's weight and bias (an inference kernel that forgot them): the same
    numbers only while the weights sit at their init values, 1 and 0."""

    def __init__(self, config: ACTConfig) -> None:
        super().__init__(config)
        for module in self.modules():
            if type(module) is nn.LayerNorm:
                module.__class__ = _AffineFreeLayerNorm


class _NoFeedForwardResidual(ACTEncoderLayer):
    def forward(self, x: Tensor, pos_embed: Tensor | None = None, key_padding_mask: Tensor | None = None) -> Tensor:
        skip = x
        if self.pre_norm:
            x = self.norm1(x)
        q = k = x if pos_embed is None else x + pos_embed
        x = skip + self.dropout1(self.self_attn(q, k, value=x, key_padding_mask=key_padding_mask)[0])
        x = self.norm2(x) if self.pre_norm else self.norm1(x)
        x = self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))  # BUG: no `skip +`
        return x if self.pre_norm else self.norm2(x)


@_mutant("deep_layers_drop_residual", "3 or more encoder layers")
class DeepLayersDropResidual(ACT):
    """Encoder layers from the third on drop the feed-forward residual: invisible to models of one or two layers,
    wrong at LeRobot's default of four."""

    def __init__(self, config: ACTConfig) -> None:
        super().__init__(config)
        for layer in self.encoder.layers[2:]:
            layer.__class__ = _NoFeedForwardResidual


def _micro_batched(backbone: type[nn.Module]) -> type[nn.Module]:
    def forward(self: nn.Module, x: Tensor) -> dict[str, Tensor]:
        parts = [backbone.forward(self, x[i:i + 4]) for i in range(0, x.shape[0], 4)]
        if len(parts) > 1 and x.shape[0] % 4:
            parts = parts[-1:] + parts[:-1]  # BUG: the remainder stitched back at the front
        return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}

    return type(f"MicroBatched{backbone.__name__}", (backbone,), {"forward": forward})


@_mutant("backbone_micro_batched", "a camera and a batch of 5 to 7 rows")
class BackboneMicroBatched(ACT):
    """The backbone runs in micro-batches of 4 and the remainder goes to the front when they are stitched back: the
    same numbers at up to 4 rows, rows out of order at 5 to 7."""

    def __init__(self, config: ACTConfig) -> None:
        super().__init__(config)
        if config.camera_shapes:
            self.backbone.__class__ = _micro_batched(type(self.backbone))


def _memoised(backbone: type[nn.Module]) -> type[nn.Module]:
    def forward(self: nn.Module, x: Tensor) -> dict[str, Tensor]:
        memo = self.__dict__.setdefault("_memo", {})
        key = (x.data_ptr(), tuple(x.shape))  # BUG: an address says nothing about the values now there
        if key not in memo:
            memo[key] = backbone.forward(self, x)
        return memo[key]

    return type(f"Memoised{backbone.__name__}", (backbone,), {"forward": forward})


@_mutant("camera_features_memoised_by_address", "a camera, in a loop re-using its input buffers")
class CameraFeaturesMemoisedByAddress(ACT):
    """Camera features cached by the image's `data_ptr`: right while every observation stays alive, stale in a
    robot loop that writes each observation into the same buffers."""

    def __init__(self, config: ACTConfig) -> None:
        super().__init__(config)
        if config.camera_shapes:
            self.backbone.__class__ = _memoised(type(self.backbone))


# -- bugs that only training over optimizer steps shows ------------------------------------------------------------
class _SnapshotHead(nn.Linear):
    """A Linear that infers from a copy of its weights taken when a checkpoint loads."""

    def snapshot(self) -> None:
        with torch.no_grad():  # BUG: refreshed here only, never when an optimizer step moves the weights
            self.register_buffer("eval_weight", self.weight.detach().clone(), persistent=False)
            self.register_buffer("eval_bias", self.bias.detach().clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) if self.training else F.linear(x, self.eval_weight, self.eval_bias)


@_mutant("action_head_snapshot_stale", "training (a trajectory: the first optimizer step moves the head)")
class ActionHeadSnapshotStale(ACT):
    """Inference runs the action head from a copy of its weights taken when a checkpoint loads (LeRobot's
    "precompute and use buffer" TODO, done for the head): exact after every `load_state_dict`, stale once an
    optimizer step moves the weights, so the trained policy acts with its untrained head."""

    def __init__(self, config: ACTConfig) -> None:
        super().__init__(config)
        self.action_head.__class__ = _SnapshotHead
        self.action_head.snapshot()
        self.register_load_state_dict_post_hook(lambda module, _keys: module.action_head.snapshot())


def load(spec: str) -> Target:
    """The target `mutant:<name>` (`act_equiv.targets.BUILTIN`)."""
    name = spec.removeprefix("mutant:")
    if name not in MUTANTS:
        raise TargetError(f"target={spec!r}: no such mutant; one of {sorted(MUTANTS)}")
    return Target(spec, MUTANTS[name].cls)
