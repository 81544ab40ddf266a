"""Targets for the command-line tests, importable as `gate_targets:NAME` with tests/ on PYTHONPATH."""

from __future__ import annotations

import os
import sys
import time

import torch
from torch import nn

from act_equiv import compat
from act_equiv.config import OBS_IMAGES
from act_equiv.models import ACT
from act_equiv.models.layers import ACTEncoderLayer


class CameraTokensReversed(ACT):
    """A real bug: camera token blocks in reverse order while their position embeddings keep camera order."""

    def encoder_inputs(self, batch, latent_sample):
        tokens, pos_embed = super().encoder_inputs(batch, latent_sample)
        images = batch.get(OBS_IMAGES, [])
        sizes = [self.backbone(img)["feature_map"].shape[-2:].numel() for img in images]
        n_first = tokens.shape[0] - sum(sizes)
        cameras = tokens[n_first:].split(sizes)
        return torch.cat([tokens[:n_first], *cameras[::-1]]), pos_embed


class Raises(ACT):
    def forward(self, batch):
        raise RuntimeError("this ACT edit is broken")


class GraphBreakWithCameras(ACT):
    """A compiled-only bug that the simplest case (no camera) does not show: a graph break in the camera loop."""

    def encoder_inputs(self, batch, latent_sample):
        if OBS_IMAGES in batch:
            compat.graph_break()
        return super().encoder_inputs(batch, latent_sample)


class SplitLinear(nn.Linear):
    """LeRobot's action head with its dot products summed in two halves: the same function, other rounding."""

    def forward(self, x):
        k = self.in_features // 2
        return (x[..., :k] @ self.weight[:, :k].T + x[..., k:] @ self.weight[:, k:].T) + self.bias


class ActionHeadSplitSum(ACT):
    """A rounding-only edit: float32 outputs differ from the reference's, float64 runs agree to rounding."""

    def __init__(self, config):
        super().__init__(config)
        self.action_head = SplitLinear(self.action_head.in_features, self.action_head.out_features)


class Hangs(ACT):
    """A worker-side target that never answers (the worker must be killed at its timeout)."""

    def forward(self, batch):
        time.sleep(3600)


class Crashes(ACT):
    """A worker-side target whose process dies in the forward (a segfault in an extension, say)."""

    def forward(self, batch):
        os._exit(3)
class LastCameraDroppedWhenExported(ACT):
    """An export-only bug: right eagerly, but an exported graph leaves out the last camera's tokens."""

    def encoder_inputs(self, batch, latent_sample):
        if compat.is_exporting() and len(batch.get(OBS_IMAGES, ())) > 1:
            batch = {**batch, OBS_IMAGES: batch[OBS_IMAGES][:-1]}
        return super().encoder_inputs(batch, latent_sample)


class NoStateCrash(ACT):
    """LeRobot's known bug as a stand-in: a config without a robot state raises KeyError."""

    def forward(self, batch):
        batch["observation.state"]  # the lookup is the bug
        return super().forward(batch)


class NoStateCrashCamerasReversed(NoStateCrash, CameraTokensReversed):
    """The known bug, and a new divergence beside it (camera tokens reversed)."""


class Noisy(ACT):
    """A target that writes to stderr as torch's exporters do (a graph dump), at the Python and the fd level."""

    def forward(self, batch):
        print("graph dump (python)", file=sys.stderr)
        os.write(2, b"graph dump (fd)\n")
        return super().forward(batch)


class ClampsStateInPlace(ACT):
    """Training clamps the caller's robot state in place (LeRobot's training loop re-uses that tensor)."""

    def forward(self, batch):
        if self.training and "observation.state" in batch:
            batch["observation.state"].clamp_(-0.5, 0.5)
        return super().forward(batch)


class ClampsStateCopy(ACT):
    """The control: the same op on its own copy of an input it then leaves unused (the outputs stay the reference's)."""

    def forward(self, batch):
        if self.training and "observation.state" in batch:
            batch["observation.state"].clone().clamp_(-0.5, 0.5)
        return super().forward(batch)


def _softmax_without_max(x, dim=None, _stacklevel=3, dtype=None):
    """A "fused" softmax that skips the max subtraction: exp overflows for logits above 88 in float32."""
    e = x.exp()
    return e / e.sum(dim, keepdim=True)


class FusedSoftmaxInFloat32(ACT):
    """A dtype-dependent path: float32 eval takes an attention softmax without the max subtraction (NaN for
    large logits), float64 the stock one, so the target's own float64 run cannot vouch for its float32 one."""

    def forward(self, batch):
        if self.training or self.action_head.weight.dtype != torch.float32:
            return super().forward(batch)
        stock = torch.nn.functional.softmax
        torch.nn.functional.softmax = _softmax_without_max
        try:
            return super().forward(batch)
        finally:
            torch.nn.functional.softmax = stock


class LayerNormAffineDroppedInEval(ACT):
    """Eval normalises without every LayerNorm's weight and bias (a "fused" inference kernel that forgot them): the
    same numbers only while the weights sit at their init values (1 and 0)."""

    def __init__(self, config):
        super().__init__(config)
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                module.forward = lambda x, m=module: (
                    torch.nn.functional.layer_norm(x, m.normalized_shape, None, None, m.eps) if not m.training
                    else nn.LayerNorm.forward(m, x))



class NoFeedForwardResidualLayer(ACTEncoderLayer):
    """An encoder layer whose feed-forward block drops its residual connection."""

    def forward(self, x, pos_embed=None, key_padding_mask=None):
        skip = x
        if self.pre_norm:
            x = self.norm1(x)
        q = k = x if pos_embed is None else x + pos_embed
        x = skip + self.dropout1(self.self_attn(q, k, value=x, key_padding_mask=key_padding_mask)[0])
        x = self.norm2(x) if self.pre_norm else self.norm1(x)
        x = self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))
        return x if self.pre_norm else self.norm2(x)


class DeepLayersDropResidual(ACT):
    """Encoder layers from the third on drop the feed-forward residual: invisible to models of one or two layers."""

    def __init__(self, config):
        super().__init__(config)
        for layer in self.encoder.layers[2:]:
            layer.__class__ = NoFeedForwardResidualLayer


def _micro_batched(backbone: type[nn.Module]) -> type[nn.Module]:
    """`backbone` run in micro-batches of 4, a remainder stitched back at the front."""

    def forward(self, x):
        parts = [backbone.forward(self, x[i:i + 4]) for i in range(0, x.shape[0], 4)]
        if len(parts) > 1 and x.shape[0] % 4:
            parts = parts[-1:] + parts[:-1]
        return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}

    return type(f"MicroBatched{backbone.__name__}", (backbone,), {"forward": forward})


class MicroBatchedBackbone(ACT):
    """The backbone runs in micro-batches of 4, and a remainder goes to the front when they are stitched back: the
    same numbers at up to 4 rows, rows out of order at 5 to 7."""

    def __init__(self, config):
        super().__init__(config)
        if config.camera_shapes:
            self.backbone.__class__ = _micro_batched(type(self.backbone))


def _memoised(backbone: type[nn.Module]) -> type[nn.Module]:
    """`backbone` with its features memoised by the input's address: stale once a new image lands where a freed one
    was (a robot loop re-uses its buffers)."""

    def forward(self, x):
        memo = self.__dict__.setdefault("_memo", {})
        key = (x.data_ptr(), tuple(x.shape))
        if key not in memo:
            memo[key] = backbone.forward(self, x)
        return memo[key]

    return type(f"Memoised{backbone.__name__}", (backbone,), {"forward": forward})


class MemoisedCameraFeatures(ACT):
    """Camera features cached by `data_ptr` in eval: right while every observation stays alive, stale in a robot
    loop that frees each observation before the next."""

    def __init__(self, config):
        super().__init__(config)
        if config.camera_shapes:
            self.backbone.__class__ = _memoised(type(self.backbone))


class CachesEncoderInputsByShape(ACT):
    """The encoder's input tokens cached by batch shape in eval (a "warm-up" cache): right on the first call, stale
    for every later batch of the same shape."""

    def encoder_inputs(self, batch, latent_sample):
        if self.training:
            return super().encoder_inputs(batch, latent_sample)
        cache = self.__dict__.setdefault("_tokens", {})
        key = tuple(tuple(v.shape) for v in batch.values() if isinstance(v, torch.Tensor))
        if key not in cache:
            cache[key] = super().encoder_inputs(batch, latent_sample)
        return cache[key]
