"""Strategies for ACT configurations LeRobot's ACT can run, and for ones it must reject."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from act_equiv.config import TINY_BACKBONE, ACTConfig, feature_grid
from act_equiv.strategies._util import as_strategy, eager_composite, keywords

# Image sides for the tiny backbone: its stride is 32, so 32..96 gives 1..3 feature cells per side.
_SIDES = (32, 48, 64, 96)
_SIDES_BY_CELLS: dict[int, tuple[int, ...]] = {
    cells: tuple(side for side in _SIDES if feature_grid(side, side)[0] == cells)
    for cells in sorted({feature_grid(side, side)[0] for side in _SIDES})
}
_WIDTHS = (8, 16, 24, 32, 48, 64)
ENSEMBLE_COEFFS = (0.0, 0.01, -0.5)
"""`temporal_ensemble_coeff` values drawn: uniform weights, LeRobot's 0.01, and weights growing towards the newest."""
KL_WEIGHTS = (10.0, 1.0)
"""`kl_weight` values drawn: LeRobot's default, and 1, where a loss that drops the weight cannot show it."""
_FIELDS = frozenset(field.name for field in dataclasses.fields(ACTConfig))


@eager_composite(pins=_FIELDS)
def configs(
    draw: st.DrawFn,
    *,
    cameras: int | st.SearchStrategy[int] | None = None,
    state: bool | st.SearchStrategy[bool] | None = None,
    env: bool | st.SearchStrategy[bool] | None = None,
    distinct_grids: bool | None = None,
    short_action_steps: bool | None = None,
    max_cameras: int = 3,
    max_layers: int = 2,
    backbones: tuple[str, ...] = (TINY_BACKBONE,),
    **pinned: Any,
) -> ACTConfig:
    """Valid `ACTConfig`s. Pin anything: a feature count (`cameras=2`, `state=True`, `env=False`) or any
    `ACTConfig` field (`use_vae=True`, `dim_model=st.sampled_from([16, 32])`), as a value or a strategy.
    `distinct_grids=True` draws cameras whose backbone feature grids are not all equal, `False` cameras that
    share one grid (their pixel sizes may still differ). `short_action_steps=True` draws `n_action_steps` below
    `chunk_size` (so a chunk of two steps or more), `False` equal to it (with temporal ensembling, which needs
    `n_action_steps == 1`, a one-step chunk). `max_layers` bounds the encoder and VAE-encoder layers, the decoder's
    half of it and at least 2 (LeRobot's default decoder has one layer, its encoders four).

    Shrinks to the smallest config LeRobot accepts: no VAE, no camera (so the environment state, which one of
    them requires), no robot state, action_dim 1, chunk_size 1, dim_model 8 with one head, feedforward width 8,
    relu, post-norm, one layer of each kind, latent_dim 1, no dropout, no temporal ensembling, the first of
    `backbones`. Pinned cameras shrink to 32x32 images and no environment state.
    """

    def pick(name: str, default: st.SearchStrategy) -> Any:
        return draw(as_strategy(pinned.pop(name)) if name in pinned else default)

    n_cameras = draw(as_strategy(cameras) if cameras is not None else st.integers(0, max_cameras))
    has_state = draw(as_strategy(state) if state is not None else st.booleans())
    # At least one camera or the environment state (LeRobot's rule): forced on without cameras.
    has_env = draw(as_strategy(env) if env is not None else (st.booleans() if n_cameras else st.just(True)))
    camera_shapes = pick("camera_shapes", _camera_shapes(n_cameras, distinct_grids))
    dim_model = pick("dim_model", st.sampled_from((8, 16, 32)))
    n_heads = pick("n_heads", st.sampled_from([h for h in (1, 2, 4, 8) if dim_model % h == 0]))
    temporal_ensemble_coeff = pick("temporal_ensemble_coeff", st.none() | st.sampled_from(ENSEMBLE_COEFFS))
    ensemble = temporal_ensemble_coeff is not None
    one_step = ensemble and short_action_steps is False
    chunk_size = pick("chunk_size", st.just(1) if one_step else st.integers(2 if short_action_steps else 1, 8))
    n_action_steps = pick("n_action_steps", (
        st.just(1) if ensemble
        else st.integers(1, chunk_size) if short_action_steps is None
        else st.integers(1, chunk_size - 1) if short_action_steps
        else st.just(chunk_size)
    ))
    layers = st.integers(1, max_layers)
    values = {
        "state_dim": pick("state_dim", st.integers(1, 6)) if has_state else None,
        "env_state_dim": pick("env_state_dim", st.integers(1, 6)) if has_env else None,
        "camera_shapes": [tuple(s) for s in camera_shapes],
        "action_dim": pick("action_dim", st.integers(1, 6)),
        "use_vae": pick("use_vae", st.booleans()),
        "vision_backbone": pick("vision_backbone", st.sampled_from(backbones)),
        "dim_model": dim_model,
        "n_heads": n_heads,
        "dim_feedforward": pick("dim_feedforward", st.sampled_from(_WIDTHS)),
        "feedforward_activation": pick("feedforward_activation", st.sampled_from(("relu", "gelu"))),
        "pre_norm": pick("pre_norm", st.booleans()),
        "n_encoder_layers": pick("n_encoder_layers", layers),
        "n_decoder_layers": pick("n_decoder_layers", st.integers(1, max(2, max_layers // 2))),  # LeRobot's default: 1
        "n_vae_encoder_layers": pick("n_vae_encoder_layers", layers),
        "latent_dim": pick("latent_dim", st.integers(1, 8)),
        "chunk_size": chunk_size,
        "n_action_steps": n_action_steps,
        "temporal_ensemble_coeff": temporal_ensemble_coeff,
        "dropout": pick("dropout", st.sampled_from((0.0, 0.1))),
        "kl_weight": pick("kl_weight", st.sampled_from(KL_WEIGHTS)),
    }
    for name in list(pinned):
        values[name] = draw(as_strategy(pinned.pop(name)))
    return ACTConfig(**values)


CONFIG_KEYWORDS = keywords(configs) | _FIELDS
"""What `configs` accepts, so what `cases` and `covering_cases` pass on to it."""


def _camera_shapes(n: int, distinct_grids: bool | None) -> st.SearchStrategy[list[tuple[int, int, int]]]:
    if distinct_grids is False:
        return st.tuples(st.sampled_from(sorted(_SIDES_BY_CELLS)), st.sampled_from(sorted(_SIDES_BY_CELLS))).flatmap(
            lambda cells: st.lists(st.tuples(st.just(3), st.sampled_from(_SIDES_BY_CELLS[cells[0]]),
                                             st.sampled_from(_SIDES_BY_CELLS[cells[1]])), min_size=n, max_size=n))
    shapes = st.lists(st.tuples(st.just(3), st.sampled_from(_SIDES), st.sampled_from(_SIDES)), min_size=n, max_size=n)
    if distinct_grids:
        return shapes.filter(lambda drawn: len({feature_grid(h, w) for _, h, w in drawn}) > 1)
    return shapes


@dataclass(frozen=True)
class InvalidConfig:
    """Keywords that `ACTConfig` must reject, and the field its error must name."""

    kwargs: dict[str, Any]
    field: str


# (field the error must name, keyword changes that break exactly one rule)
_BREAKERS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("feedforward_activation", {"feedforward_activation": "glu"}),
    ("feedforward_activation", {"feedforward_activation": "tanh"}),
    ("replace_final_stride_with_dilation", {"replace_final_stride_with_dilation": True}),
    ("dim_model", {"dim_model": 30, "n_heads": 3}),
    ("dim_model", {"dim_model": 12, "n_heads": 8}),
    ("n_obs_steps", {"n_obs_steps": 2}),
    ("n_action_steps", {"chunk_size": 4, "n_action_steps": 5}),
    ("n_action_steps", {"temporal_ensemble_coeff": 0.01, "n_action_steps": 2, "chunk_size": 4}),
    ("vision_backbone", {"vision_backbone": "efficientnet_b0"}),
    ("vision_backbone", {"vision_backbone": "resnet50"}),
    ("camera_shapes", {"camera_shapes": [], "env_state_dim": None}),
    ("camera_shapes[0]", {"camera_shapes": [(1, 32, 32)]}),
    ("pretrained_backbone_weights", {"pretrained_backbone_weights": "ResNet18_Weights.IMAGENET1K_V1"}),
    ("dropout", {"dropout": 1.5}),
    ("chunk_size", {"chunk_size": 0}),
    ("action_dim", {"action_dim": 2.5}),
    ("use_vae", {"use_vae": "yes"}),
    ("state_dim", {"state_dim": 0}),
)


@eager_composite()
def invalid_configs(draw: st.DrawFn) -> InvalidConfig:
    """A valid config's keywords with exactly one rule broken."""
    base = draw(configs()).to_dict()
    field, changes = draw(st.sampled_from(_BREAKERS))
    return InvalidConfig({**base, **changes}, field)
