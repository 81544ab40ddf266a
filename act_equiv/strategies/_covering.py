"""Cases for the rows of the strength-3 covering array (`act_equiv.coverage`): every feature of the row pinned,
everything else drawn by Hypothesis, so a row's cases differ from run to run and still shrink."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

from act_equiv import coverage
from act_equiv.case import DEEP_LAYERS, Case
from act_equiv.strategies._batches import cases
from act_equiv.strategies._configs import CONFIG_KEYWORDS, ENSEMBLE_COEFFS, KL_WEIGHTS
from act_equiv.strategies._util import check_keywords, keywords


def covering_rows(strength: int = 3) -> list[dict[str, object]]:
    """The covering array every check starts with, its exclusions decided by the config rules."""
    return coverage.covering_array(strength)


def covering_cases(row: Mapping[str, object], **scope: Any) -> st.SearchStrategy[Case]:
    """Cases with the row's features (`act_equiv.coverage.FACTORS`) pinned; `scope` as in `cases` (config pins,
    `scales`), less what the row decides."""
    padding = bool(row["padding"])
    pins: dict[str, Any] = {
        "use_vae": row["use_vae"], "pre_norm": row["pre_norm"], "dropout": 0.1 if row["dropout"] else 0.0,
        "cameras": row["cameras"], "state": row["state"], "env": row["env"],
        "distinct_grids": bool(row["distinct_grids"]) if int(row["cameras"]) >= 2 else None,
        "temporal_ensemble_coeff": st.sampled_from(ENSEMBLE_COEFFS) if row["temporal_ensemble"] else None,
        "short_action_steps": bool(row["short_action_steps"]),
        "kl_weight": st.sampled_from([w for w in KL_WEIGHTS if w != 1]) if row["kl_weight_not_1"] else 1.0,
        # Deep: LeRobot's default encoders (4 layers) and a decoder past its first layer.
        "n_encoder_layers": st.integers(DEEP_LAYERS, 4) if row["deep"] else st.integers(1, DEEP_LAYERS - 1),
        **({"n_vae_encoder_layers": st.integers(DEEP_LAYERS, 4), "n_decoder_layers": st.integers(2, 3)}
           if row["deep"] else {}),
    }
    if padding:
        pins["chunk_size"] = st.integers(2, 8)  # one step is never padded, so padding needs two
    batch = {
        "actions": row["actions"],
        "batch_size": st.integers(5, 8) if row["batch_ge5"] else st.integers(2, 4) if row["batch_gt1"] else 1,
        "pad": st.sampled_from(("some", "all_but_one")) if padding else "none",
    }
    decided = {"training", "batch", "chunk_size", "n_action_steps", *pins}
    check_keywords("covering_cases()", scope, (keywords(cases) | CONFIG_KEYWORDS) - decided)
    return cases(training=row["training"], batch=batch, **pins, **scope)
