"""Targets for the command-line tests, importable as `gate_targets:NAME` with tests/ on PYTHONPATH."""

from __future__ import annotations

import torch

from act_equiv import compat
from act_equiv.config import OBS_IMAGES
from act_equiv.models import ACT


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


class LastCameraDroppedWhenExported(ACT):
    """An export-only bug: right eagerly, but an exported graph leaves out the last camera's tokens."""

    def encoder_inputs(self, batch, latent_sample):
        if compat.is_exporting() and len(batch.get(OBS_IMAGES, ())) > 1:
            batch = {**batch, OBS_IMAGES: batch[OBS_IMAGES][:-1]}
        return super().encoder_inputs(batch, latent_sample)
