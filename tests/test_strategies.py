"""The strategies themselves: they shrink to the minimum their docstrings promise, and a misspelt pin fails where
the strategy is built (as Hypothesis tests its own strategies)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from act_equiv import ACTConfig
from act_equiv import strategies as aes
from act_equiv.case import BatchSpec, Case

T = TypeVar("T")

MINIMAL = ACTConfig(
    state_dim=None, env_state_dim=1, camera_shapes=(), action_dim=1, chunk_size=1, n_action_steps=1,
    vision_backbone="tiny_resnet", pre_norm=False, dim_model=8, n_heads=1, dim_feedforward=8,
    feedforward_activation="relu", n_encoder_layers=1, n_decoder_layers=1, use_vae=False, latent_dim=1,
    n_vae_encoder_layers=1, temporal_ensemble_coeff=None, dropout=0.0, kl_weight=10.0,
)
"""What `configs`' docstring says it shrinks to."""


def minimal(strategy: st.SearchStrategy[T], condition: Callable[[T], bool] = lambda _: True) -> T:
    return find(strategy, condition, settings=settings(database=None, derandomize=True, max_examples=500))


def test_configs_shrink_to_the_documented_minimum() -> None:
    assert minimal(aes.configs()) == MINIMAL


def test_pinned_cameras_shrink_to_small_images_and_no_environment_state() -> None:
    found = minimal(aes.configs(), lambda c: len(c.camera_shapes) == 2)
    assert found == dataclasses.replace(MINIMAL, camera_shapes=((3, 32, 32),) * 2, env_state_dim=None)


def test_each_condition_costs_only_what_it_needs() -> None:
    assert minimal(aes.configs(), lambda c: c.use_vae) == dataclasses.replace(MINIMAL, use_vae=True)
    assert minimal(aes.configs(), lambda c: c.state_dim is not None) == dataclasses.replace(MINIMAL, state_dim=1)
    assert minimal(aes.configs(), lambda c: c.n_encoder_layers == 2) == dataclasses.replace(MINIMAL, n_encoder_layers=2)


def test_batch_specs_shrink_to_one_unpadded_row() -> None:
    assert minimal(aes.batch_specs()) == BatchSpec(batch_size=1, seed=0, scale=1.0, pad="none", actions=True)


def test_cases_shrink_to_eval_without_actions() -> None:
    found = minimal(aes.cases())
    assert found == Case(MINIMAL, BatchSpec(batch_size=1, seed=0, scale=1.0, pad="none", actions=False),
                         training=False, weight_seed=0)


def test_a_vae_in_training_shrinks_to_the_minimum_with_actions() -> None:
    found = minimal(aes.cases(), lambda case: case.training and case.config.use_vae)
    assert found == Case(dataclasses.replace(MINIMAL, use_vae=True), BatchSpec(1, 0, 1.0, "none", True),
                         training=True, weight_seed=0)


@given(aes.cases(cameras=2, use_vae=True, dim_model=st.sampled_from([16, 32]), batch={"batch_size": 3}))
@settings(max_examples=10, database=None)
def test_pins_hold_as_values_and_strategies(case: Case) -> None:
    assert len(case.config.camera_shapes) == 2 and case.config.use_vae and case.config.dim_model in (16, 32)
    assert case.batch.batch_size == 3


@pytest.mark.parametrize(("build", "bad", "allowed"), [
    (lambda: aes.configs(camers=2), "camers", "cameras"),
    (lambda: aes.cases(camers=2), "camers", "cameras"),
    (lambda: aes.cases(batch={"sizee": 1}), "sizee", "batch_size"),
    (lambda: aes.batch_specs(sizee=1), "sizee", "batch_size"),
    (lambda: aes.covering_cases(aes.covering_rows()[0], max_layer=1), "max_layer", "max_layers"),
    (lambda: aes.invalid_configs(cameras=1), "cameras", "none"),
])
def test_a_wrong_keyword_fails_when_the_strategy_is_built(build: Callable[[], Any], bad: str, allowed: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"unexpected keyword '{bad}'.*allowed: .*\b{allowed}\b"):
        build()


def test_covering_cases_take_the_scope_cases_take() -> None:
    """The gate passes the profile's scope and the input magnitudes; only the row's own features are refused."""
    row = aes.covering_rows()[0]
    aes.covering_cases(row, max_layers=1, backbones=("tiny_resnet",), **aes.magnitudes_for("float16"))
    with pytest.raises(InvalidArgument, match="'use_vae'"):
        aes.covering_cases(row, use_vae=True)


def test_a_positional_argument_fails_when_the_strategy_is_built() -> None:
    with pytest.raises(InvalidArgument, match="positional"):
        aes.configs(2)


@pytest.mark.parametrize("strategy", [aes.configs, aes.batch_specs, aes.cases, aes.invalid_configs])
def test_checked_strategies_keep_their_signature_and_docstring(strategy: Callable[..., Any]) -> None:
    assert "draw" not in inspect.signature(strategy).parameters
    assert strategy.__doc__ and strategy.__name__ in repr(strategy())


@given(short=aes.configs(short_action_steps=True), whole=aes.configs(short_action_steps=False),
       ensembled=aes.configs(short_action_steps=False, temporal_ensemble_coeff=st.sampled_from([0.0, 0.01])))
@settings(max_examples=20, database=None)
def test_short_action_steps_pin(short: ACTConfig, whole: ACTConfig, ensembled: ACTConfig) -> None:
    """Below the chunk, equal to it, and with ensembling (n_action_steps == 1) equal only in a one-step chunk."""
    assert 1 <= short.n_action_steps < short.chunk_size
    assert whole.n_action_steps == whole.chunk_size
    assert ensembled.n_action_steps == ensembled.chunk_size == 1


def test_short_action_steps_cost_one_more_step() -> None:
    found = minimal(aes.configs(), lambda c: c.n_action_steps < c.chunk_size)
    assert found == dataclasses.replace(MINIMAL, chunk_size=2, n_action_steps=1)


def test_features_read_the_policy_settings() -> None:
    config = dataclasses.replace(MINIMAL, chunk_size=4, n_action_steps=1, temporal_ensemble_coeff=0.01, kl_weight=0.0)
    assert {name: value for name, value in Case(config).features().items() if name in POLICY_FACTORS} == {
        "temporal_ensemble": True, "short_action_steps": True, "kl_weight_not_1": True}
    assert not any(Case(MINIMAL.replace(kl_weight=1.0)).features()[name] for name in POLICY_FACTORS)


POLICY_FACTORS = ("temporal_ensemble", "short_action_steps", "kl_weight_not_1")
ROWS = aes.covering_rows()


def test_the_covering_rows_hold_both_levels_of_the_policy_factors() -> None:
    assert all({row[name] for row in ROWS} == {False, True} for name in POLICY_FACTORS)


@pytest.mark.parametrize("row", ROWS, ids=[f"row{i}" for i in range(len(ROWS))])
@given(data=st.data())
@settings(max_examples=4, database=None)
def test_covering_cases_have_their_rows_features(row: dict[str, object], data: st.DataObject) -> None:
    """A row's cases really have its features, read off the config itself for the policy-level ones: a temporal
    ensembling coefficient, n_action_steps below chunk_size, a KL weight other than 1, each exactly where the row
    says so (and `Case.features`, which the report counts, agrees on every factor)."""
    case = data.draw(aes.covering_cases(row), "case")
    config = case.config
    assert (config.temporal_ensemble_coeff is not None) == row["temporal_ensemble"]
    assert (config.n_action_steps < config.chunk_size) == row["short_action_steps"]
    assert (config.kl_weight != 1) == row["kl_weight_not_1"]
    assert case.features() == row
