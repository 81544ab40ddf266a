"""The mutation self-test: the gate must kill every catalogued refactoring bug under the `ci` profile.

The kill test runs `act-equiv check`'s stages per mutant (parametrized, so pytest-xdist spreads them) with the ci
profile's settings, scope and example count, derandomized, stopping at the first divergence (no shrinking: the
full `act-equiv mutants` run shrinks and reports). Mutants that only a compiled comparison can see run with
aot_eager; the others with the eager checks alone, which judge them identically and cost no compile.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from act_equiv.case import BatchSpec, make_batch
from act_equiv.cli import selftest
from act_equiv.config import ACTConfig
from act_equiv.models import ACT, LegacyACT, build, reference_state_dict
from act_equiv.settings import Search
from act_equiv.targets import resolve
from act_equiv.targets.mutants import MUTANTS, _VAELatent

SMALL = {
    "vision_backbone": "tiny_resnet", "state_dim": 3, "env_state_dim": 2, "camera_shapes": [(3, 64, 96), (3, 96, 64)],
    "action_dim": 2, "chunk_size": 4, "n_action_steps": 4, "dim_model": 8, "n_heads": 2, "dim_feedforward": 8,
    "n_encoder_layers": 1, "n_decoder_layers": 1, "n_vae_encoder_layers": 1, "latent_dim": 2,
}


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


def test_catalogue() -> None:
    assert len(MUTANTS) >= 15
    for name, mutant in MUTANTS.items():
        assert mutant.name == name
        assert issubclass(mutant.cls, ACT) and mutant.cls is not ACT
        assert len(mutant.description) > 20 and "\n" not in mutant.description, name
        assert mutant.needs, name
        assert resolve(f"mutant:{name}").factory is mutant.cls


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_loads_reference_weights_strictly(name: str) -> None:
    config = ACTConfig(**SMALL)
    model = MUTANTS[name].cls(config)
    model.load_state_dict(reference_state_dict(config, seed=1), strict=True)


def test_vae_mutant_scaffold_is_correct() -> None:
    """The VAE mutants' shared latent, unmutated, equals the reference bitwise: their bug is their only change."""
    config = ACTConfig(**SMALL, dropout=0.1)
    reference = build(config, seed=1, form=LegacyACT).train()
    scaffold = _VAELatent(config).train()
    scaffold.load_state_dict(reference.state_dict(), strict=True)
    for pad in ("none", "some"):
        batch = make_batch(config, BatchSpec(batch_size=2, seed=3, pad=pad))
        outputs = []
        for model in (reference, scaffold):
            torch.manual_seed(7)
            actions, (mu, log_sigma_x2) = model(batch)
            outputs.append((actions, mu, log_sigma_x2))
        for expected, actual in zip(*outputs, strict=True):
            assert torch.equal(expected, actual)


@pytest.mark.parametrize("name", [pytest.param(name, marks=[pytest.mark.compile] if mutant.compiled else [])
                                  for name, mutant in MUTANTS.items()])
def test_mutant_is_killed_under_ci_profile(name: str) -> None:
    result = selftest.property_run(name, Search(profile="ci", time_budget=120, shrink_budget=0),
                                   backend="aot_eager" if MUTANTS[name].compiled else None)
    assert result["killed"], f"mutant {name} survived {result['examples_run']} examples ({result['stopped_by']})"


def test_mutants_command_writes_report(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    selftest.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["mutants", "--only", "device_from_state", "--backend", "none", "--no-shrink",
                              "--report-dir", str(tmp_path)])
    assert args.func(args) == 0
    (directory,) = tmp_path.glob("mutants-*")
    report = json.loads((directory / "mutants.json").read_text())
    (result,) = report["mutants"]
    assert result["property"]["killed"] and result["property"]["check"] == "model: raised"
    assert result["baseline"]["killed"] is False  # the baseline always has a state feature
    assert report["summary"]["property_kill_rate"] == 1.0
    assert "| `device_from_state` |" in (directory / "summary.md").read_text()
