"""Policy-level reference: LeRobot 0.6.1's loss, action queue and temporal ensembler around any ACT form.

The batch follows the model's contract (`"observation.images"` is the list of camera tensors). The loss
returns tensors, never `.item()`, so it can be compiled without graph breaks; callers log as they like.
"""

from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from act_equiv.config import ACTION, ACTION_IS_PAD, ACTConfig
from act_equiv.models.base import ACTOutput, Batch


class ACTTemporalEnsembler:
    """Online exponentially weighted average over overlapping chunks; weights exp(-coeff * i), oldest first."""

    def __init__(self, temporal_ensemble_coeff: float, chunk_size: int) -> None:
        self.chunk_size = chunk_size
        self.ensemble_weights = torch.exp(-temporal_ensemble_coeff * torch.arange(chunk_size))
        self.ensemble_weights_cumsum = torch.cumsum(self.ensemble_weights, dim=0)
        self.reset()

    def reset(self) -> None:
        self.ensembled_actions: Tensor | None = None
        self.ensembled_actions_count: Tensor | None = None

    def update(self, actions: Tensor) -> Tensor:
        """Fold a (B, chunk_size, A) chunk into the running average and pop the next (B, A) action."""
        weights = self.ensemble_weights.to(device=actions.device, dtype=actions.dtype)
        cumsum = self.ensemble_weights_cumsum.to(device=actions.device, dtype=actions.dtype)
        if self.ensembled_actions is None:
            self.ensembled_actions = actions.clone()
            self.ensembled_actions_count = torch.ones((self.chunk_size, 1), dtype=torch.long, device=actions.device)
        else:
            if actions.shape[0] != self.ensembled_actions.shape[0]:
                raise ValueError(
                    f"batch size changed from {self.ensembled_actions.shape[0]} to {actions.shape[0]} "
                    "without reset(); the ensemble averages per batch row"
                )
            count = self.ensembled_actions_count
            self.ensembled_actions = self.ensembled_actions * cumsum[count - 1]
            self.ensembled_actions = self.ensembled_actions + actions[:, :-1] * weights[count]
            self.ensembled_actions = self.ensembled_actions / cumsum[count]
            count = torch.clamp(count + 1, max=self.chunk_size)
            self.ensembled_actions = torch.cat([self.ensembled_actions, actions[:, -1:]], dim=1)
            self.ensembled_actions_count = torch.cat([count, torch.ones_like(count[-1:])])
        action = self.ensembled_actions[:, 0]
        self.ensembled_actions = self.ensembled_actions[:, 1:]
        self.ensembled_actions_count = self.ensembled_actions_count[1:]
        return action


class ACTPolicy(nn.Module):
    """Holds an ACT form as `self.model` (state-dict keys prefixed `model.`, as in LeRobot)."""

    def __init__(self, config: ACTConfig, model: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.model = model
        self.temporal_ensembler = (
            None
            if config.temporal_ensemble_coeff is None
            else ACTTemporalEnsembler(config.temporal_ensemble_coeff, config.chunk_size)
        )
        self.reset()

    def reset(self) -> None:
        """Call whenever the environment is reset."""
        if self.temporal_ensembler is not None:
            self.temporal_ensembler.reset()
        self._action_queue: deque[Tensor] = deque(maxlen=self.config.n_action_steps)

    @torch.no_grad()
    def predict_action_chunk(self, batch: Batch) -> Tensor:
        self.eval()
        return self.model(batch)[0]

    @torch.no_grad()
    def select_action(self, batch: Batch) -> Tensor:
        """One (B, A) action per call: from the ensemble, or from a queue refilled once per chunk."""
        self.eval()
        if self.temporal_ensembler is not None:
            return self.temporal_ensembler.update(self.predict_action_chunk(batch))
        if not self._action_queue:
            actions = self.predict_action_chunk(batch)[:, : self.config.n_action_steps]
            self._action_queue.extend(actions.transpose(0, 1))
        return self._action_queue.popleft()

    def get_optim_params(self) -> list[dict]:
        """LeRobot's parameter groups: the backbone at `optimizer_lr_backbone`, everything else at the optimizer's
        learning rate."""
        backbone = [(name.startswith("model.backbone"), p) for name, p in self.named_parameters() if p.requires_grad]
        return [{"params": [p for in_backbone, p in backbone if not in_backbone]},
                {"params": [p for in_backbone, p in backbone if in_backbone], "lr": self.config.optimizer_lr_backbone}]

    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """(loss, {"l1_loss", ["kld_loss"]}) for a batch."""
        return self.loss(batch, self.model(batch))

    def loss(self, batch: Batch, output: ACTOutput) -> tuple[Tensor, dict[str, Tensor]]:
        """LeRobot 0.6.1's loss for a model output: masked l1 over valid steps, plus KL when the VAE ran."""
        actions_hat, (mu, log_sigma_x2) = output
        valid = ~batch[ACTION_IS_PAD]
        per_element = F.l1_loss(batch[ACTION], actions_hat, reduction="none") * valid.unsqueeze(-1)
        n_valid = (valid.sum() * actions_hat.shape[-1]).clamp_min(1)
        l1_loss = per_element.sum() / n_valid
        losses = {"l1_loss": l1_loss}
        loss = l1_loss
        if mu is not None:
            kld = (-0.5 * (1 + log_sigma_x2 - mu.pow(2) - log_sigma_x2.exp())).sum(-1).mean()
            losses["kld_loss"] = kld
            loss = loss + kld * self.config.kl_weight
        return loss, losses
