"""The `lerobot` target on a fixed config: LeRobot's real ACT against act_equiv's legacy reference.

Skipped unless LeRobot is importable (`tox -e lerobot`). See docs/LEROBOT_FINDINGS.md for the findings.
"""

from __future__ import annotations

import pytest

from act_equiv.case import BatchSpec, Case
from act_equiv.config import ACTConfig
from act_equiv.gate import Gate
from act_equiv.models import reference_state_dict
from act_equiv.models.backbone import ResNetBackbone
from act_equiv.targets import resolve

pytest.importorskip("lerobot")

CONFIG = ACTConfig(
    state_dim=3, env_state_dim=2, camera_shapes=[(3, 32, 64), (3, 64, 48)], action_dim=4,
    vision_backbone="tiny_resnet", dim_model=16, n_heads=2, dim_feedforward=16, latent_dim=4,
    n_encoder_layers=1, n_decoder_layers=1, n_vae_encoder_layers=1, chunk_size=5, n_action_steps=5,
    use_vae=True, dropout=0.1,
)


@pytest.fixture(scope="module")
def gate() -> Gate:
    return Gate(target="lerobot", backend="aot_eager")


def test_adapter_builds_lerobot_act_and_loads_reference_weights_strictly() -> None:
    from lerobot.policies.act.modeling_act import ACT

    model = resolve("lerobot").factory(CONFIG)
    assert type(model) is ACT
    assert isinstance(model.backbone, ResNetBackbone)  # tiny_resnet mapped in; everything else is LeRobot's
    model.load_state_dict(reference_state_dict(CONFIG, seed=3), strict=True)


@pytest.mark.compile
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_lerobot_matches_legacy_bitwise_and_compiles(gate: Gate, training: bool) -> None:
    verdict = gate.verdict(Case(CONFIG, BatchSpec(batch_size=2, seed=1, pad="some"), training, weight_seed=3))
    pairs = {check.pair for check in verdict.checks}
    assert {"legacy/target", "target/target_repeat", "target/compiled"} <= pairs
    assert all(check.passed and check.tolerance.bitwise for check in verdict.checks), verdict.summary()
    assert not verdict.info["compile"]["fell_back_to_eager"]
    # LeRobot's float32-only zero latent (finding 2) shows only in float64 runs: a float32 run's fp64 reference falls
    # back to the legacy model's float64 run, since LeRobot agrees with legacy bitwise.
    assert verdict.passed, verdict.summary()


def test_config_without_robot_state_is_a_target_raised_finding(gate: Gate) -> None:
    case = Case(CONFIG.replace(state_dim=None), BatchSpec(batch_size=2), training=False)
    verdict = gate.verdict(case)
    assert not verdict.passed
    [finding] = verdict.findings
    assert finding.check == "target_raised"
    assert finding.detail["type"] == "KeyError" and "observation.state" in finding.message
