"""Targets for the command-line tests, importable as `gate_targets:NAME` with tests/ on PYTHONPATH."""

from __future__ import annotations

import os
import sys
import time

import torch
from torch import nn

from act_equiv import testing
from act_equiv.config import OBS_IMAGES
from act_equiv.models import ACT, ACTPolicy


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
            testing.graph_break()
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
        if testing.is_exporting() and len(batch.get(OBS_IMAGES, ())) > 1:
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


class ClampsStateCopy(ACT):
    """The control of `mutant:state_clamped_in_place`: the same op on its own copy of an input it then leaves unused
    (the outputs stay the reference's)."""

    def forward(self, batch):
        if self.training and "observation.state" in batch:
            batch["observation.state"].clone().clamp_(-0.5, 0.5)
        return super().forward(batch)


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


class CompiledGradientDrift(ACT):
    """A compiled-only bug in training: while compiling, the training forward's actions are scaled by 1.001 (a
    stand-in for a miscompile of the backward's inputs); eager, eval and the compiled eval graph are untouched."""

    def decode(self, tokens, pos_embed, batch_size):
        out = super().decode(tokens, pos_embed, batch_size)
        return out * 1.001 if self.training and testing.is_compiling() else out


class QueueLastFirstPolicy(ACTPolicy):
    """A fork's own policy: its action queue hands out each chunk's actions last first (the model is untouched)."""

    @torch.no_grad()
    def select_action(self, batch):
        self.eval()
        if not self._action_queue:
            actions = self.predict_action_chunk(batch)[:, : self.config.n_action_steps]
            self._action_queue.extend(actions.transpose(0, 1).flip(0))
        return self._action_queue.popleft()


def queue_last_first_policy(config):
    """A `--target` whose factory returns a policy: the fork's own `select_action` is what gets compared."""
    return QueueLastFirstPolicy(config, ACT(config))


def own_policy(config):
    """The control: act_equiv's own policy around the concat model, returned by the factory."""
    return ACTPolicy(config, ACT(config))


class ClipSkippedWhenCompiled(ACTPolicy):
    """A fork's own training step that skips gradient clipping while compiling (to dodge a graph break): eager
    training clips, the compiled whole step does not."""

    def update_step(self, batch, optimizer, grad_clip_norm):
        loss, _ = self.forward(batch)
        loss.backward()
        if not testing.is_compiling():
            torch.nn.utils.clip_grad_norm_(self.parameters(), grad_clip_norm)
        optimizer.step()
        optimizer.zero_grad()
        return loss


def clip_skipped_when_compiled(config):
    """A `--target` whose policy trains with its own step (`update_step`), clipping only when eager."""
    return ClipSkippedWhenCompiled(config, ACT(config))


class EagerStepPolicy(ClipSkippedWhenCompiled):
    """The same step behind `torch.compiler.disable`: a whole step "compiled" that runs eagerly (it then clips)."""

    update_step = torch.compiler.disable(ClipSkippedWhenCompiled.update_step)


def eager_step_policy(config):
    return EagerStepPolicy(config, ACT(config))
