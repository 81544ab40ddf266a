"""ACTPolicy: LeRobot 0.6.1's loss (checked by hand), the action queue, the temporal ensembler (checked against
an offline weighted average), reset() and the batch-size guard."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from act_equiv import ACT, ACTConfig, LegacyACT, build
from act_equiv.models import ACTPolicy, ACTTemporalEnsembler

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


class ScriptedModel(nn.Module):
    """Stands in for an ACT form: returns the next scripted (actions, (mu, log_sigma_x2)) and counts calls."""

    def __init__(self, outputs: list[tuple[Tensor, tuple[Tensor | None, Tensor | None]]]) -> None:
        super().__init__()
        self.outputs = outputs
        self.calls = 0
        self.anchor = nn.Parameter(torch.zeros(()))  # so the policy has a parameter, like a real model

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, tuple[Tensor | None, Tensor | None]]:
        out = self.outputs[self.calls]
        self.calls += 1
        return out


def _chunks_model(chunks: list[Tensor]) -> ScriptedModel:
    return ScriptedModel([(chunk, (None, None)) for chunk in chunks])


# -- loss -----------------------------------------------------------------------------------------------


def _hand_case() -> tuple[dict[str, Tensor], Tensor, Tensor, Tensor]:
    action = torch.zeros(2, 3, 2)
    actions_hat = torch.tensor(
        [
            [[1.0, 2.0], [3.0, -4.0], [100.0, 100.0]],  # last step padded
            [[-1.0, 0.5], [100.0, 100.0], [100.0, 100.0]],  # last two steps padded
        ]
    )
    action_is_pad = torch.tensor([[False, False, True], [False, True, True]])
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    log_sigma_x2 = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    return {"action": action, "action_is_pad": action_is_pad}, actions_hat, mu, log_sigma_x2


def test_loss_by_hand_with_kl(tiny_config: Callable[..., ACTConfig]) -> None:
    batch, actions_hat, mu, log_sigma_x2 = _hand_case()
    config = tiny_config(chunk_size=3, n_action_steps=3, action_dim=2, kl_weight=10.0)
    policy = ACTPolicy(config, ScriptedModel([(actions_hat, (mu, log_sigma_x2))]))
    loss, parts = policy(batch)

    # 3 valid steps x 2 action dims; the padded 100s are ignored. (LeRobot 0.4.4 divided by all 12 elements.)
    l1 = (1 + 2 + 3 + 4 + 1 + 0.5) / (3 * 2)
    # Per latent dim -0.5 * (1 + logσ² − μ² − exp logσ²), summed over the latent, averaged over the batch.
    kld_row0 = -0.5 * (1 + 0 - 1 - 1) + 0.0
    kld_row1 = -0.5 * (1 + 1 - 0 - math.e) + -0.5 * (1 + 0 - 4 - 1)
    kld = (kld_row0 + kld_row1) / 2
    assert set(parts) == {"l1_loss", "kld_loss"}
    assert all(isinstance(value, Tensor) for value in parts.values())  # no .item(): compile-friendly
    assert parts["l1_loss"].item() == pytest.approx(l1, rel=1e-6)
    assert parts["kld_loss"].item() == pytest.approx(kld, rel=1e-6)
    assert loss.item() == pytest.approx(l1 + 10.0 * kld, rel=1e-6)


def test_loss_by_hand_without_kl(tiny_config: Callable[..., ACTConfig]) -> None:
    """No mu (no VAE, or VAE in eval) means no KL term at all; LeRobot 0.4.4 crashed here in eval."""
    batch, actions_hat, _, _ = _hand_case()
    config = tiny_config(chunk_size=3, n_action_steps=3, action_dim=2, use_vae=True, kl_weight=10.0)
    policy = ACTPolicy(config, ScriptedModel([(actions_hat, (None, None))]))
    loss, parts = policy(batch)
    assert set(parts) == {"l1_loss"}
    assert loss.item() == pytest.approx(11.5 / 6, rel=1e-6)
    assert torch.equal(loss, parts["l1_loss"])


def test_loss_all_padded_is_zero_not_nan(tiny_config: Callable[..., ACTConfig]) -> None:
    batch, actions_hat, _, _ = _hand_case()
    batch["action_is_pad"] = torch.ones_like(batch["action_is_pad"])
    config = tiny_config(chunk_size=3, n_action_steps=3, action_dim=2)
    loss, parts = ACTPolicy(config, ScriptedModel([(actions_hat, (None, None))]))(batch)
    assert loss.item() == 0.0  # divided by clamp_min(0 valid elements, 1)
    assert parts["l1_loss"].item() == 0.0


def test_loss_no_padding_is_plain_mean(tiny_config: Callable[..., ACTConfig]) -> None:
    _, actions_hat, _, _ = _hand_case()
    action = torch.randn(2, 3, 2)
    batch = {"action": action, "action_is_pad": torch.zeros(2, 3, dtype=torch.bool)}
    config = tiny_config(chunk_size=3, n_action_steps=3, action_dim=2)
    loss, _ = ACTPolicy(config, ScriptedModel([(actions_hat, (None, None))]))(batch)
    torch.testing.assert_close(loss, (action - actions_hat).abs().mean())


@pytest.mark.parametrize("form", [LegacyACT, ACT], ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("use_vae", "training"), [(True, True), (True, False), (False, True)], ids=["vae-train", "vae-eval", "novae-train"]
)
def test_loss_with_real_model(
    tiny_config: Callable[..., ACTConfig],
    make_batch: Callable[..., Any],
    form: type,
    use_vae: bool,
    training: bool,
) -> None:
    config = tiny_config(use_vae=use_vae, kl_weight=3.0)
    model = build(config, seed=0, form=form).train(training)
    policy = ACTPolicy(config, model)
    batch = make_batch(config, batch_size=3)
    torch.manual_seed(0)
    loss, parts = policy(batch)
    torch.manual_seed(0)
    actions_hat, (mu, log_sigma_x2) = model(batch)

    valid = ~batch["action_is_pad"]
    errors = (batch["action"] - actions_hat).abs()[valid]  # (valid steps, action_dim)
    expected_l1 = errors.sum() / errors.numel()
    torch.testing.assert_close(parts["l1_loss"], expected_l1)
    if use_vae and training:
        kld = sum((-0.5 * (1 + log_sigma_x2[b] - mu[b] ** 2 - log_sigma_x2[b].exp())).sum() for b in range(3)) / 3
        torch.testing.assert_close(parts["kld_loss"], kld)
        torch.testing.assert_close(loss, expected_l1 + 3.0 * kld)
    else:
        assert "kld_loss" not in parts
        torch.testing.assert_close(loss, expected_l1)
    assert loss.requires_grad  # eval mode does not disable autograd


# -- action queue ---------------------------------------------------------------------------------------


def _numbered_chunks(n_chunks: int, batch_size: int, chunk_size: int, action_dim: int) -> list[Tensor]:
    """Chunk k, step s, dim a holds 1000k + 10s + a (+ 0.5 on batch row 1): every action is recognisable."""
    steps = torch.arange(chunk_size, dtype=torch.float32).view(1, -1, 1) * 10
    dims = torch.arange(action_dim, dtype=torch.float32).view(1, 1, -1)
    rows = torch.arange(batch_size, dtype=torch.float32).view(-1, 1, 1) * 0.5
    return [1000.0 * k + steps + dims + rows for k in range(n_chunks)]


def test_select_action_pops_n_action_steps_then_queries(tiny_config: Callable[..., ACTConfig]) -> None:
    config = tiny_config(chunk_size=5, n_action_steps=3, action_dim=2)
    chunks = _numbered_chunks(4, 2, 5, 2)
    model = _chunks_model(chunks)
    policy = ACTPolicy(config, model)
    policy.train()
    batch: dict[str, Any] = {}
    for step in range(9):
        action = policy.select_action(batch)
        assert not policy.training  # select_action switches to eval
        chunk, index = divmod(step, 3)
        assert action.shape == (2, 2)
        assert torch.equal(action, chunks[chunk][:, index]), (step, action)
        assert model.calls == chunk + 1  # one query per n_action_steps actions, never the chunk's tail


def test_select_action_full_chunk(tiny_config: Callable[..., ACTConfig]) -> None:
    config = tiny_config(chunk_size=4, n_action_steps=4, action_dim=3)
    chunks = _numbered_chunks(2, 1, 4, 3)
    model = _chunks_model(chunks)
    policy = ACTPolicy(config, model)
    actions = [policy.select_action({}) for _ in range(5)]
    assert torch.equal(torch.stack(actions[:4], dim=1), chunks[0])
    assert torch.equal(actions[4], chunks[1][:, 0])
    assert model.calls == 2


def test_reset_clears_queue(tiny_config: Callable[..., ACTConfig]) -> None:
    config = tiny_config(chunk_size=5, n_action_steps=3, action_dim=2)
    chunks = _numbered_chunks(3, 2, 5, 2)
    model = _chunks_model(chunks)
    policy = ACTPolicy(config, model)
    policy.select_action({})
    policy.select_action({})
    policy.reset()
    assert torch.equal(policy.select_action({}), chunks[1][:, 0])  # queried again, not chunk 0's step 2
    assert model.calls == 2


@pytest.mark.parametrize("temporal_ensemble_coeff", [None, 0.01], ids=["queue", "ensemble"])
def test_select_action_real_model_both_forms(
    tiny_config: Callable[..., ACTConfig], make_batch: Callable[..., Any], temporal_ensemble_coeff: float | None
) -> None:
    n_action_steps = 3 if temporal_ensemble_coeff is None else 1
    config = tiny_config(n_action_steps=n_action_steps, temporal_ensemble_coeff=temporal_ensemble_coeff)
    policies = [ACTPolicy(config, build(config, seed=0, form=form)) for form in (LegacyACT, ACT)]
    batches = [make_batch(config, seed=seed, with_action=False) for seed in range(5)]
    first_chunk = policies[0].predict_action_chunk(batches[0])
    sequences = [[policy.select_action(batch) for batch in batches] for policy in policies]
    assert all(torch.equal(a, b) for a, b in zip(*sequences, strict=True))
    assert torch.equal(sequences[0][0], first_chunk[:, 0])
    if temporal_ensemble_coeff is None:
        # The queue ignores the observations until it is empty.
        assert torch.equal(torch.stack(sequences[0][:3], dim=1), first_chunk[:, :3])


# -- temporal ensembler ---------------------------------------------------------------------------------


def _offline_ensemble(chunks: list[Tensor], coeff: float) -> list[Tensor]:
    """Action t = Σ w_i a_i / Σ w_i over every chunk k <= t that covers t, oldest first, w_i = exp(-coeff i)."""
    chunk_size = chunks[0].shape[1]
    weights = torch.exp(-coeff * torch.arange(chunk_size)).to(chunks[0].dtype)  # the ensembler's float32 weights
    expected = []
    for t in range(len(chunks)):
        covering = [chunks[k][:, t - k] for k in range(max(0, t - chunk_size + 1), t + 1)]  # oldest first
        w = weights[: len(covering)]
        expected.append(sum(w[i] * a for i, a in enumerate(covering)) / w.sum())
    return expected


@pytest.mark.parametrize("coeff", [0.01, 0.5, 0.0, -0.7])
def test_temporal_ensemble_matches_offline_average(tiny_config: Callable[..., ACTConfig], coeff: float) -> None:
    chunk_size, n_steps = 4, 11  # more steps than the chunk: windows fill up, then slide
    config = tiny_config(chunk_size=chunk_size, n_action_steps=1, action_dim=3, temporal_ensemble_coeff=coeff)
    gen = torch.Generator().manual_seed(0)
    chunks = [torch.randn(2, chunk_size, 3, generator=gen, dtype=torch.float64) for _ in range(n_steps)]
    policy = ACTPolicy(config, _chunks_model(chunks))
    online = [policy.select_action({}) for _ in range(n_steps)]
    expected = _offline_ensemble(chunks, coeff)
    assert torch.equal(online[0], chunks[0][:, 0])
    for t, (got, want) in enumerate(zip(online, expected, strict=True)):
        # The ensembler keeps its weights and their cumulative sums in float32: agreement to float32 rounding.
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6, msg=f"step {t}")
    if coeff == 0.0:  # uniform weights: the plain mean over the last chunk_size chunks
        t = n_steps - 1
        plain = torch.stack([chunks[k][:, t - k] for k in range(t - chunk_size + 1, t + 1)]).mean(0)
        torch.testing.assert_close(online[t], plain, rtol=1e-6, atol=1e-6)


def test_temporal_ensemble_real_model_float32(
    tiny_config: Callable[..., ACTConfig], make_batch: Callable[..., Any]
) -> None:
    config = tiny_config(chunk_size=4, n_action_steps=1, temporal_ensemble_coeff=0.1)
    model = build(config, seed=0).eval()
    batches = [make_batch(config, seed=seed, with_action=False) for seed in range(7)]
    with torch.no_grad():
        chunks = [model(batch)[0] for batch in batches]
    policy = ACTPolicy(config, model)
    online = [policy.select_action(batch) for batch in batches]
    for got, want in zip(online, _offline_ensemble(chunks, 0.1), strict=True):
        torch.testing.assert_close(got, want)


def test_reset_clears_ensemble(tiny_config: Callable[..., ACTConfig]) -> None:
    config = tiny_config(chunk_size=4, n_action_steps=1, action_dim=2, temporal_ensemble_coeff=0.01)
    chunks = _numbered_chunks(4, 2, 4, 2)
    policy = ACTPolicy(config, _chunks_model(chunks))
    policy.select_action({})
    policy.select_action({})
    policy.reset()
    assert policy.temporal_ensembler.ensembled_actions is None
    assert torch.equal(policy.select_action({}), chunks[2][:, 0])  # no trace of chunks 0 and 1


def test_ensemble_batch_size_change_needs_reset(tiny_config: Callable[..., ACTConfig]) -> None:
    config = tiny_config(chunk_size=4, n_action_steps=1, action_dim=2, temporal_ensemble_coeff=0.01)
    chunks = [torch.randn(2, 4, 2), torch.randn(3, 4, 2), torch.randn(3, 4, 2)]
    policy = ACTPolicy(config, _chunks_model(chunks))
    policy.select_action({})
    with pytest.raises(ValueError, match="batch size changed from 2 to 3"):
        policy.select_action({})
    policy.reset()
    assert torch.equal(policy.select_action({}), chunks[2][:, 0])


def test_ensembler_directly() -> None:
    """The ensembler on its own: one action per update, the first equals the first chunk's first step."""
    ensembler = ACTTemporalEnsembler(0.01, chunk_size=3)
    first = torch.randn(1, 3, 2)
    assert torch.equal(ensembler.update(first), first[:, 0])
    second = torch.randn(1, 3, 2)
    w0, w1 = 1.0, math.exp(-0.01)
    torch.testing.assert_close(ensembler.update(second), (w0 * first[:, 1] + w1 * second[:, 0]) / (w0 + w1))


def test_policy_without_ensemble_has_no_ensembler(tiny_config: Callable[..., ACTConfig]) -> None:
    assert ACTPolicy(tiny_config(), _chunks_model([])).temporal_ensembler is None
