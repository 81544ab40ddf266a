"""Strength-t covering array over ACT's interacting features, and the t-way coverage a run reached.

Why: ACT's bugs live in interactions (the VAE encoder only in training, padding masks only with actions, the
per-camera feature grids only with two cameras or more, pre-norm with dropout ...). Random generation hits the
common combinations again and again and may never hit a rare triple; a covering array names a small set of
configurations that contains every valid 3-way combination of the factors below, and `interactions` measures how
many of those combinations a run actually exercised.

Validity: a full row is valid when no definitional `EXCLUSIONS` rule applies to it and the `valid` hook accepts it;
a t-way combination is valid when it extends to at least one valid full row. The hook decides LeRobot's config
rules: the default, `config_rules`, builds an `ACTConfig` for the row and returns its `ConfigError` message, so the
config's own rules decide (a test may pass a hook of its own). The hook sees only rows that the definitional rules
accept. Every excluded combination is reported with its reason (`describe_exclusions`), none silently.

Pure Python by design (no torch, no hypothesis; `act_equiv.config` is pure Python too): the report renderer imports
it.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from types import MappingProxyType

from act_equiv.config import TINY_BACKBONE, ACTConfig
from act_equiv.errors import ConfigError

__all__ = [
    "EXCLUSIONS",
    "FACTORS",
    "MISSING_SHOWN",
    "Exclusion",
    "Validator",
    "config_rules",
    "covering_array",
    "describe_exclusions",
    "drawn_not_compared",
    "format_combo",
    "interactions",
]

FACTORS: Mapping[str, tuple[object, ...]] = MappingProxyType({
    "use_vae": (False, True),
    "training": (False, True),
    "actions": (True, False),  # the batch carries `action`/`action_is_pad` (eval may omit them; training never does)
    "padding": (False, True),  # some `action_is_pad` entry is actually True
    "state": (False, True),  # robot state feature present
    "env": (False, True),  # environment state feature present
    "cameras": (0, 1, 2, 3),
    "distinct_grids": (False, True),  # the cameras' backbone feature grids (h, w) are not all equal
    "batch_gt1": (False, True),
    "batch_ge5": (False, True),  # five rows or more: beyond a micro-batch of 4, up to 8
    "deep": (False, True),  # three encoder layers or more (LeRobot's default is 4)
    "dropout": (False, True),  # dropout > 0
    "pre_norm": (False, True),
    "temporal_ensemble": (False, True),  # temporal_ensemble_coeff is set: select_action averages overlapping chunks
    "short_action_steps": (False, True),  # n_action_steps < chunk_size: the action queue drops each chunk's tail
    "kl_weight_not_1": (False, True),  # kl_weight != 1: the loss scales the KL term
})
"""Factor name -> levels, simplest level first."""

Validator = Callable[[Mapping[str, object]], str | None]
"""A full row (every factor of `FACTORS` set) -> the reason it is rejected, or None; deterministic and hashable."""

MISSING_SHOWN = 5
"""How many missing combinations `interactions` lists per factor set."""


@dataclass(frozen=True)
class Exclusion:
    """A rule that rejects full rows, with the reason the report prints."""

    reason: str
    applies: Callable[[Mapping[str, object]], bool]


EXCLUSIONS: tuple[Exclusion, ...] = (
    Exclusion("distinct feature grids need two cameras or more",
              lambda row: bool(row["distinct_grids"]) and row["cameras"] in (0, 1)),
    Exclusion("training needs actions (the loss is computed from them)",
              lambda row: bool(row["training"]) and not row["actions"]),
    Exclusion("padding is part of the actions", lambda row: bool(row["padding"]) and not row["actions"]),
    Exclusion("a batch of five rows or more has more than one", lambda row: bool(row["batch_ge5"])
              and not row["batch_gt1"]),
)
"""The definitional rules: what the factors mean makes these rows impossible, whatever the config allows."""

def config_rules(row: Mapping[str, object]) -> str | None:
    """Default `valid` hook: `ACTConfig`'s own verdict on the row's feature set (its error message), so no
    combination is excluded by a copy of LeRobot's rules. The chunk is the shortest the row allows: two steps where a
    step is padded (the first step never is) or `n_action_steps` is below it, else one."""
    chunk_size = 2 if row["padding"] or row["short_action_steps"] else 1
    return _config_error((
        ("state_dim", 1 if row["state"] else None), ("env_state_dim", 1 if row["env"] else None),
        ("camera_shapes", ((3, 32, 32),) * int(row["cameras"])), ("vision_backbone", TINY_BACKBONE),
        ("use_vae", bool(row["use_vae"])), ("pre_norm", bool(row["pre_norm"])),
        ("dropout", 0.1 if row["dropout"] else 0.0), ("chunk_size", chunk_size),
        ("n_action_steps", chunk_size - 1 if row["short_action_steps"] else chunk_size),
        ("temporal_ensemble_coeff", 0.01 if row["temporal_ensemble"] else None),
        ("kl_weight", 10.0 if row["kl_weight_not_1"] else 1.0)))


@functools.cache
def _config_error(fields: tuple[tuple[str, object], ...]) -> str | None:
    """`ACTConfig(**fields)`'s error message, or None. Cached: the covering array asks about every full row (tens of
    thousands), and they differ in only a few hundred configs."""
    try:
        ACTConfig(**dict(fields))
    except ConfigError as error:
        return str(error)
    return None


def format_combo(combo: Mapping[str, object]) -> str:
    """`use_vae=True, training=False, actions=True`: one combination as the report prints it."""
    return ", ".join(f"{name}={value}" for name, value in combo.items())


_NAMES = tuple(FACTORS)
_LEVELS = tuple(FACTORS.values())
_REPAIR_MOVES = 300
"""Local-search moves `_shrink` spends trying to repair an array one row shorter before it settles."""
_NOISE = 0.1
"""Probability that `_shrink` takes a move that uncovers more than it covers (to leave local minima)."""

_Levels = tuple[int, ...]
"""A (partial) row as level indices into `FACTORS`."""


def _as_row(levels: _Levels) -> dict[str, object]:
    return {name: values[level] for name, values, level in zip(_NAMES, _LEVELS, levels, strict=True)}


def _rejection(levels: _Levels, valid: Validator) -> tuple[int, tuple[str, ...]]:
    """(how many definitional rules the row breaks, the reasons it is rejected); `(0, ())` for a valid row.

    The hook is asked only when no definitional rule applies, so its reason comes with a count of 0.
    """
    row = _as_row(levels)
    broken = tuple(exclusion.reason for exclusion in EXCLUSIONS if exclusion.applies(row))
    if broken:
        return len(broken), broken
    reason = valid(row)
    return 0, () if reason is None else (reason,)


def _factor_sets(strength: int) -> list[tuple[int, ...]]:
    if not 1 <= strength <= len(_NAMES):
        raise ValueError(f"strength must be between 1 and {len(_NAMES)}, got {strength}")
    return list(itertools.combinations(range(len(_NAMES)), strength))


def _projection(factors: tuple[int, ...]) -> Callable[[_Levels], _Levels]:
    """levels -> the levels at `factors` (`itemgetter` is fast, but returns a bare item for a single factor)."""
    if len(factors) == 1:
        (only,) = factors
        return lambda levels: (levels[only],)
    return itemgetter(*factors)


_STRIDES = tuple(math.prod(len(values) for values in _LEVELS[f + 1:]) for f in range(len(_LEVELS)))
_ROWS = math.prod(len(values) for values in _LEVELS)
"""Full rows are numbered in product order (`itertools.product` over the levels); sets of rows are bitmasks."""


def _encode(levels: _Levels) -> int:
    return sum(level * stride for level, stride in zip(levels, _STRIDES, strict=True))


def _decode(row: int) -> _Levels:
    return tuple(row // stride % len(values) for stride, values in zip(_STRIDES, _LEVELS, strict=True))


def _level_mask(factor: int, level: int) -> int:
    """The full rows with `factor` at `level`: runs of `stride` rows, one per period of `stride * levels` rows."""
    stride, period = _STRIDES[factor], _STRIDES[factor] * len(_LEVELS[factor])
    repeat = ((1 << _ROWS) - 1) // ((1 << period) - 1)  # bit 0 of every period
    return (((1 << stride) - 1) << (level * stride)) * repeat


_LEVEL_MASKS = tuple(tuple(_level_mask(f, level) for level in range(len(values))) for f, values in enumerate(_LEVELS))


def _combo_mask(factors: tuple[int, ...], levels: _Levels) -> int:
    """The full rows that contain the combination."""
    mask = (1 << _ROWS) - 1
    for f, level in zip(factors, levels, strict=True):
        mask &= _LEVEL_MASKS[f][level]
    return mask


@dataclass(frozen=True)
class _Space:
    """Every full row classified, and the valid t-way combinations numbered, for one (strength, valid) pair."""

    factor_sets: list[tuple[int, ...]]
    valid: int  # the valid full rows
    broken: dict[int, int]  # definitional rules broken -> the rejected rows that break that many
    reasons: dict[str, int]  # reason -> the rejected rows it rejects, reasons in order of first rejected row
    combos: list[tuple[tuple[int, ...], _Levels]]  # combination id -> (factor set, levels); ids grouped by factor set
    masks: list[int]  # combination id -> the valid rows containing it
    ids: dict[tuple[int, ...], dict[_Levels, int]]  # factor set -> levels -> combination id


@functools.lru_cache(maxsize=8)
def _space(strength: int, valid: Validator) -> _Space:
    """Classify every full row (the hook runs once per row the definitional rules accept) and number the combos:
    a combination is valid when a valid row contains it, one AND of bitmasks per candidate."""
    factor_sets = _factor_sets(strength)
    accepted = 0
    broken: dict[int, int] = {}
    reasons: dict[str, int] = {}
    for row, levels in enumerate(itertools.product(*(range(len(values)) for values in _LEVELS))):
        count, why = _rejection(levels, valid)
        if not why:
            accepted |= 1 << row
            continue
        broken[count] = broken.get(count, 0) | 1 << row
        for reason in why:
            reasons[reason] = reasons.get(reason, 0) | 1 << row
    combos: list[tuple[tuple[int, ...], _Levels]] = []
    masks: list[int] = []
    ids: dict[tuple[int, ...], dict[_Levels, int]] = {}
    for factors in factor_sets:
        ids[factors] = {}
        for levels in itertools.product(*(range(len(_LEVELS[f])) for f in factors)):
            mask = _combo_mask(factors, levels) & accepted
            if mask:
                ids[factors][levels] = len(combos)
                combos.append((factors, levels))
                masks.append(mask)
    return _Space(factor_sets, accepted, broken, reasons, combos, masks, ids)


def _combos_of(space: _Space) -> Callable[[int], tuple[int, ...]]:
    """Valid row -> the ids of its combinations, one per factor set, in `factor_sets` order (memoised)."""
    lookups = [(space.ids[factors].__getitem__, _projection(factors)) for factors in space.factor_sets]

    @functools.cache
    def combos_of(row: int) -> tuple[int, ...]:
        levels = _decode(row)
        return tuple(lookup(project(levels)) for lookup, project in lookups)

    return combos_of


def _add(planes: list[int], mask: int) -> None:
    """Add one to the bit-sliced counters (`planes[i]`: bit i of every row's count) of the rows in `mask`."""
    i = 0
    while mask:
        if i == len(planes):
            planes.append(0)
        planes[i], mask = planes[i] ^ mask, planes[i] & mask
        i += 1


def _subtract(planes: list[int], mask: int) -> None:
    """Subtract one from the counters of the rows in `mask` (each at least one)."""
    i = 0
    while mask:
        planes[i], mask = planes[i] ^ mask, ~planes[i] & mask
        i += 1


def _greedy(space: _Space, combos_of: Callable[[int], tuple[int, ...]]) -> list[int]:
    """Density greedy: repeatedly take the valid row that covers the most uncovered combinations; ties go to the
    first row in product order.

    Every row's score is exact and kept up to date in bit-sliced counters over all rows at once; the best row is
    read off from the highest bit plane down.
    """
    planes: list[int] = []
    for mask in space.masks:
        _add(planes, mask)
    uncovered = [True] * len(space.combos)
    left = len(space.combos)
    chosen: list[int] = []
    while left:
        best = space.valid
        for plane in reversed(planes):
            if best & plane:
                best &= plane
        row = (best & -best).bit_length() - 1
        chosen.append(row)
        for c in combos_of(row):
            if uncovered[c]:
                uncovered[c] = False
                left -= 1
                _subtract(planes, space.masks[c])
    return chosen


def _times(combos_of: Callable[[int], tuple[int, ...]], n_combos: int, chosen: list[int]) -> list[int]:
    """How many of the chosen rows contain each combination."""
    times = [0] * n_combos
    for r in chosen:
        for c in combos_of(r):
            times[c] += 1
    return times


def _shrink(space: _Space, combos_of: Callable[[int], tuple[int, ...]], chosen: list[int],
            rng: random.Random) -> list[int]:
    """Drop rows while a local search can repair the array: the smallest complete array found.

    Each round removes the row that covers the fewest combinations alone, then repeatedly picks an uncovered
    combination and rewrites one row to contain it (the valid rewrite that uncovers the fewest others), for at
    most `_REPAIR_MOVES` moves.
    """
    best = list(chosen)
    rows = list(chosen)
    while rows:
        times = _times(combos_of, len(space.combos), rows)
        drop = min(range(len(rows)), key=lambda i: sum(times[c] == 1 for c in combos_of(rows[i])))
        for c in combos_of(rows.pop(drop)):
            times[c] -= 1
        uncovered = [c for c, n in enumerate(times) if n == 0]
        for _ in range(_REPAIR_MOVES):
            if not uncovered:
                break
            factors, levels = space.combos[rng.choice(uncovered)]
            fewest, moves = math.inf, []
            for i, r in enumerate(rows):
                rewritten = list(_decode(r))
                for f, level in zip(factors, levels, strict=True):
                    rewritten[f] = level
                new = _encode(rewritten)
                if not space.valid >> new & 1:
                    continue
                delta = sum((times[a] == 1) - (times[b] == 0)
                            for a, b in zip(combos_of(r), combos_of(new), strict=True) if a != b)
                if delta < fewest:
                    fewest, moves = delta, [(i, new)]
                elif delta == fewest:
                    moves.append((i, new))
            if not moves or (fewest > 0 and rng.random() >= _NOISE):
                continue
            i, new = rng.choice(moves)
            for a, b in zip(combos_of(rows[i]), combos_of(new), strict=True):
                times[a] -= 1
                times[b] += 1
            rows[i] = new
            uncovered = [c for c, n in enumerate(times) if n == 0]
        if uncovered:
            break
        best = list(rows)
    return best


def _drop_redundant(combos_of: Callable[[int], tuple[int, ...]], n_combos: int, chosen: list[int]) -> list[int]:
    """Remove, last first, each row whose combinations the remaining rows all contain."""
    times = _times(combos_of, n_combos, chosen)
    kept = []
    for r in reversed(chosen):
        if all(times[c] > 1 for c in combos_of(r)):
            for c in combos_of(r):
                times[c] -= 1
        else:
            kept.append(r)
    return kept


def _cost(levels: _Levels) -> tuple[int, int, _Levels]:
    """Sort key putting cheap, simple rows first: fewer cameras, then fewer non-simplest levels."""
    return levels[_NAMES.index("cameras")], sum(level != 0 for level in levels), levels


@functools.lru_cache(maxsize=8)
def _array(strength: int, valid: Validator) -> tuple[_Levels, ...]:
    space = _space(strength, valid)
    combos_of = _combos_of(space)
    chosen = _drop_redundant(combos_of, len(space.combos), _greedy(space, combos_of))
    chosen = _shrink(space, combos_of, chosen, random.Random(0))
    return tuple(sorted(map(_decode, chosen), key=_cost))


def covering_array(strength: int = 3, valid: Validator = config_rules) -> list[dict[str, object]]:
    """Valid full rows that together contain every valid `strength`-way combination of `FACTORS`.

    Deterministic (greedy, then a seeded local search that drops rows) and cached per (strength, valid): pass the
    same hook object each time. Rows come cheapest first (fewer cameras, fewer non-simplest levels).
    """
    return [_as_row(levels) for levels in _array(strength, valid)]


def _level_indices(row: Mapping[str, object]) -> tuple[int, ...]:
    try:
        return tuple(levels.index(row[name]) for name, levels in FACTORS.items())
    except ValueError:
        bad = next(name for name, levels in FACTORS.items() if row[name] not in levels)
        raise ValueError(f"factor {bad!r}: observed {row[bad]!r} is not one of {FACTORS[bad]}") from None


def _combo_text(factors: tuple[int, ...], levels: tuple[int, ...]) -> str:
    return format_combo({_NAMES[f]: _LEVELS[f][level] for f, level in zip(factors, levels, strict=True)})


def interactions(rows: Iterable[Mapping[str, object]], strength: int = 3,
                 valid: Validator = config_rules) -> dict[str, object]:
    """The valid `strength`-way combinations that the observed feature rows of a run contain, in all and per factors.

    Returns `{"strength", "hit", "total", "by_factors": {"a × b × c": {"hit", "total", "missing"}}}`; `missing`
    lists at most `MISSING_SHOWN` combinations. Only valid combinations count, so `hit <= total`.
    """
    space = _space(strength, valid)
    seen: set[tuple[tuple[int, ...], _Levels]] = set()
    projections = [(factors, _projection(factors)) for factors in space.factor_sets]
    for row in rows:
        levels = _level_indices(row)
        seen.update((factors, project(levels)) for factors, project in projections)
    wanted: dict[tuple[int, ...], list[_Levels]] = {factors: [] for factors in space.factor_sets}
    for factors, levels in space.combos:
        wanted[factors].append(levels)
    by_factors: dict[str, dict[str, object]] = {}
    hit = 0
    for factors, combos in wanted.items():
        missing = sorted(levels for levels in combos if (factors, levels) not in seen)
        hit += len(combos) - len(missing)
        by_factors[" × ".join(_NAMES[f] for f in factors)] = {
            "hit": len(combos) - len(missing),
            "total": len(combos),
            "missing": [_combo_text(factors, levels) for levels in missing[:MISSING_SHOWN]],
        }
    return {"strength": strength, "hit": hit, "total": len(space.combos), "by_factors": by_factors}


def describe_exclusions(strength: int = 3, valid: Validator = config_rules,
                        examples: int = 3) -> list[dict[str, object]]:
    """Each rule that rejects rows, its reason, and the `strength`-way combinations it leaves out of the totals.

    A combination is left out when every full row containing it is rejected. It is charged to the reasons of the
    rows containing it that break the fewest definitional rules: `cameras=0, env=False, distinct_grids=True` goes to
    the distinct-grids rule alone (it is impossible whatever the config says), `cameras=0, env=False, state=True` to
    the config rule. Among those rows it goes to the reason behind the most of them: the hook gives one reason per
    row (`ACTConfig` raises on the first rule a config breaks), so where two config rules overlap, the overlap's rows
    name only the first, and the rule that excludes the combination rejects the rest. Definitional rules are listed
    even when they leave nothing out at this strength.
    Entries: `{"reason", "excluded" (count), "examples" (at most `examples` combinations as strings)}`.
    """
    space = _space(strength, valid)
    charged: dict[str, list[str]] = {exclusion.reason: [] for exclusion in EXCLUSIONS}
    charged.update((reason, []) for reason in space.reasons if reason not in charged)
    for factors in space.factor_sets:
        for levels in itertools.product(*(range(len(_LEVELS[f])) for f in factors)):
            if levels in space.ids[factors]:
                continue
            mask = _combo_mask(factors, levels)
            rows = next(rows for _, rejected in sorted(space.broken.items()) if (rows := mask & rejected))
            counts = {reason: (rows & rejected).bit_count() for reason, rejected in space.reasons.items()}
            most = max(counts.values())
            for reason, count in counts.items():
                if count == most:
                    charged[reason].append(_combo_text(factors, levels))
    return [{"reason": reason, "excluded": len(texts), "examples": texts[:examples]}
            for reason, texts in charged.items()]


def drawn_not_compared(compared: Iterable[Mapping[str, object]], uncompared: Iterable[tuple[Mapping[str, object], str]],
                       strength: int = 3, valid: Validator = config_rules) -> dict[str, object]:
    """The valid `strength`-way combinations that cases drew but only cases that compared nothing had (both sides
    raised alike, or a side could not run them), each with the reason of the first such case: they count as not
    covered. Returns `{"count", "by_reason": {reason: count}, "combos": [{"combo", "reason"}]}` (at most
    `MISSING_SHOWN` combos per reason)."""
    space = _space(strength, valid)
    wanted = set(space.combos)
    projections = [(factors, _projection(factors)) for factors in space.factor_sets]
    seen = {(factors, project(_level_indices(row))) for row in compared for factors, project in projections}
    lost: dict[tuple[tuple[int, ...], _Levels], str] = {}
    for row, reason in uncompared:
        levels = _level_indices(row)
        for factors, project in projections:
            combo = (factors, project(levels))
            if combo in wanted and combo not in seen:
                lost.setdefault(combo, reason)
    by_reason: dict[str, int] = {}
    shown: list[dict[str, str]] = []
    for (factors, levels), reason in sorted(lost.items()):
        by_reason[reason] = by_reason.get(reason, 0) + 1
        if by_reason[reason] <= MISSING_SHOWN:
            shown.append({"combo": _combo_text(factors, levels), "reason": reason})
    return {"count": len(lost), "by_reason": by_reason, "combos": shown}
