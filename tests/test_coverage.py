"""act_equiv.coverage: the covering array covers every valid t-way combination, checked by brute force here.

The validity rules are restated below by hand (not read from the module), so a wrong rule table fails too.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from operator import itemgetter
from pathlib import Path

import pytest

from act_equiv.coverage import (
    EXCLUSIONS,
    FACTORS,
    config_rules,
    covering_array,
    describe_exclusions,
    format_combo,
    interactions,
)

ROWS_3 = 32  # frozen: a change in the generator shows here first
ROWS_2 = 11
DIGEST_3 = "e9fe94ac090ad2cff2d40bdd079731ddf13331c550ccf25c1e147cefa74f0a72"  # sha256 of the strength-3 rows' JSON
Combo = tuple[tuple[str, object], ...]


def default_ok(row: Mapping[str, object]) -> bool:
    """The default validity, restated by hand."""
    return not (
        (row["distinct_grids"] and row["cameras"] < 2)  # type: ignore[operator]
        or (row["training"] and not row["actions"])
        or (row["padding"] and not row["actions"])
        or (row["batch_ge5"] and not row["batch_gt1"])
        or (row["cameras"] == 0 and not row["env"])
        # ensembling needs n_action_steps == 1; equal to chunk_size, that is a one-step chunk, never padded
        or (row["temporal_ensemble"] and not row["short_action_steps"] and row["padding"])
    )


def no_state_with_env(row: Mapping[str, object]) -> str | None:
    """A custom hook: the config rule, and state and env never together."""
    return "state and env together" if row["state"] and row["env"] else config_rules(row)


@functools.cache
def _all_rows() -> tuple[dict[str, object], ...]:
    return tuple(dict(zip(FACTORS, values, strict=True)) for values in itertools.product(*FACTORS.values()))


def all_rows() -> list[dict[str, object]]:
    return [dict(row) for row in _all_rows()]


def combos_of(rows: list[dict[str, object]], strength: int) -> set[Combo]:
    """Every combination the rows contain (a projection per factor set, so the 2**13 * 4 rows take a second)."""
    return {tuple(zip(names, values, strict=True))
            for names in itertools.combinations(FACTORS, strength)
            for values in set(map(itemgetter(*names), rows))}


@functools.cache
def valid_combos(strength: int, ok: Callable[[Mapping[str, object]], bool] = default_ok) -> set[Combo]:
    return combos_of([row for row in _all_rows() if ok(row)], strength)


def test_module_rules_match_the_hand_written_ones() -> None:
    for row in _all_rows():
        module_ok = not any(rule.applies(row) for rule in EXCLUSIONS) and config_rules(row) is None
        assert module_ok == default_ok(row), row


@pytest.mark.parametrize("strength", [2, 3])
def test_array_is_valid_and_covers_every_valid_combination(strength: int) -> None:
    rows = covering_array(strength)
    assert all(default_ok(row) for row in rows)
    assert combos_of(rows, strength) >= valid_combos(strength)
    assert len(rows) == {2: ROWS_2, 3: ROWS_3}[strength]


def test_deterministic_cached_and_safe_to_mutate() -> None:
    rows = covering_array()
    assert rows == covering_array()
    rows[0]["cameras"] = 99
    assert covering_array()[0]["cameras"] != 99


def test_same_rows_in_a_fresh_process_with_another_hash_seed_and_no_torch() -> None:
    """The module loads alone (no torch, no hypothesis) and gives the same rows whatever PYTHONHASHSEED is."""
    path = Path(__file__).parents[1] / "act_equiv" / "coverage.py"
    script = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('coverage_alone', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['coverage_alone'] = module\n"
        "spec.loader.exec_module(module)\n"
        "assert 'torch' not in sys.modules and 'hypothesis' not in sys.modules\n"
        "print(json.dumps(module.covering_array()))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True).stdout
    assert json.loads(out) == covering_array()


def test_the_rows_are_frozen() -> None:
    digest = hashlib.sha256(json.dumps(covering_array()).encode()).hexdigest()
    assert digest == DIGEST_3


def test_interactions_of_the_array_is_complete_and_totals_match_brute_force() -> None:
    result = interactions(covering_array())
    expected = valid_combos(3)
    assert result["strength"] == 3
    assert result["hit"] == result["total"] == len(expected)
    for key, entry in result["by_factors"].items():  # type: ignore[attr-defined]
        names = tuple(key.split(" × "))
        assert entry["total"] == sum(tuple(name for name, _ in combo) == names for combo in expected)
        assert entry["missing"] == []


def test_a_missing_combination_is_reported() -> None:
    gap = {"use_vae": True, "dropout": True, "pre_norm": True}
    rows = [row for row in all_rows() if default_ok(row) and any(row[name] != value for name, value in gap.items())]
    result = interactions(rows)
    assert result["hit"] == result["total"] - 1
    entry = result["by_factors"]["use_vae × dropout × pre_norm"]  # type: ignore[index]
    assert entry == {"hit": 7, "total": 8, "missing": [format_combo(gap)]}


def test_excluded_combinations_are_not_counted() -> None:
    result = interactions([])
    assert result["hit"] == 0
    by_factors = result["by_factors"]
    assert by_factors["training × actions × padding"]["total"] == 5  # type: ignore[index]
    assert by_factors["env × cameras × distinct_grids"]["total"] == 2 * 4 + 2 * 2 - 1  # type: ignore[index]
    assert by_factors["padding × temporal_ensemble × short_action_steps"]["total"] == 7  # type: ignore[index]
    impossible = {"use_vae": False, "training": True, "actions": False, "padding": True, "state": False, "env": False,
                  "cameras": 0, "distinct_grids": True, "batch_gt1": False, "batch_ge5": False, "deep": False,
                  "dropout": False, "pre_norm": False,
                  "temporal_ensemble": True, "short_action_steps": False, "kl_weight_not_1": False}
    seen = interactions([impossible])
    assert seen["hit"] == len(combos_of([impossible], 3) & valid_combos(3)) > 0


def test_describe_exclusions_names_every_excluded_combination() -> None:
    described = describe_exclusions(examples=10**6)
    counts = {entry["reason"]: entry["excluded"] for entry in described}
    ensemble_rule = ("ACTConfig.n_action_steps=2 is invalid: must be 1 when temporal_ensemble_coeff is set (the "
                     "ensemble queries every step)")
    camera_rule = ("ACTConfig.camera_shapes=() is invalid: at least one camera or an environment state "
                   "(env_state_dim) is required")
    assert counts == {  # the 14 other factors: 13 with two levels, `cameras` with four
        "distinct feature grids need two cameras or more": 2 * 14 * 2,
        "training needs actions (the loss is computed from them)": 13 * 2 + 4,
        "padding is part of the actions": 13 * 2 + 4,
        "a batch of five rows or more has more than one": 13 * 2 + 4,
        camera_rule: 13 * 2 + 1,  # not distinct_grids=True
        ensemble_rule: 1,
    }
    # Its rows without camera or environment name the camera rule (ACTConfig checks it first); the rule that
    # excludes the combination rejects the rest, and it alone is charged.
    (ensemble,) = (entry for entry in described if entry["reason"] == ensemble_rule)
    assert ensemble["examples"] == ["padding=True, temporal_ensemble=True, short_action_steps=False"]
    charged = {text for entry in described for text in entry["examples"]}  # type: ignore[attr-defined]
    excluded = combos_of(list(_all_rows()), 3) - valid_combos(3)
    assert charged == {format_combo(dict(combo)) for combo in excluded}


def test_a_custom_hook_is_honoured() -> None:
    def ok(row: Mapping[str, object]) -> bool:
        return default_ok(row) and not (row["state"] and row["env"])

    rows = covering_array(valid=no_state_with_env)
    assert not any(row["state"] and row["env"] for row in rows)
    assert all(ok(row) for row in rows)
    assert combos_of(rows, 3) >= valid_combos(3, ok)
    result = interactions(rows, valid=no_state_with_env)
    assert result["hit"] == result["total"] == len(valid_combos(3, ok)) < interactions([])["total"]
    assert result["by_factors"]["state × env × cameras"]["total"] == 14 - 4  # type: ignore[index]
    reasons = {entry["reason"] for entry in describe_exclusions(valid=no_state_with_env)}
    assert "state and env together" in reasons


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="strength"):
        covering_array(0)
    with pytest.raises(ValueError, match="cameras"):
        interactions([{**covering_array()[0], "cameras": 5}])


