"""Hypothesis profiles for act_equiv runs, and what each one draws.

- `ci`: the default when the CI environment variable is set. Derandomized (a failure reproduces by
  re-running), no deadline (compiles take seconds), bounded examples so a 2-core run fits its budget, and
  the failure blob printed. Registered under Hypothesis's own "ci" name on purpose: it replaces the built-in
  one, which would otherwise also drop the example database without bounding the run.
- `dev`: the local default. Random, keeps the example database so a found failure is replayed first.
- `thorough`: many more examples, bigger models (resnet18 too), six layers, four cameras.

Every profile draws up to LeRobot's default depth (4 encoder and 4 VAE-encoder layers) at small widths.

Select with `--hypothesis-profile NAME` or `ACT_EQUIV_PROFILE=NAME`.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

from act_equiv.errors import UsageError

PROFILE_ENV = "ACT_EQUIV_PROFILE"

_COMMON: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}

PROFILES: dict[str, dict[str, Any]] = {
    "ci": {"max_examples": 9, "derandomize": True, "database": None, "print_blob": True, **_COMMON},
    "dev": {"max_examples": 25, **_COMMON},
    "thorough": {"max_examples": 300, **_COMMON},
}

# What the strategies draw under each profile (keywords of `strategies.configs`).
SCOPES: dict[str, dict[str, Any]] = {
    "ci": {"max_cameras": 3, "max_layers": 4, "backbones": ("tiny_resnet",)},
    "dev": {"max_cameras": 3, "max_layers": 4, "backbones": ("tiny_resnet",)},
    "thorough": {"max_cameras": 4, "max_layers": 6, "backbones": ("tiny_resnet", "resnet18")},
}


TRAIN_STEPS: dict[str, int] = {"ci": 3, "dev": 3, "thorough": 8}
"""Optimizer steps of a training case's trajectory under each profile (`act_equiv.run.training`): three show a
stale weight-derived buffer, a lost parameter group or optimizer state within a check's time; thorough trains on
to let rounding grow."""


def register() -> None:
    for name, options in PROFILES.items():
        settings.register_profile(name, **options)


def default_profile() -> str:
    """ACT_EQUIV_PROFILE if set, else `ci` under CI, else `dev`."""
    chosen = os.environ.get(PROFILE_ENV) or ("ci" if os.environ.get("CI") else "dev")
    if chosen not in PROFILES:
        raise UsageError(f"{PROFILE_ENV}={chosen!r} is invalid: one of {sorted(PROFILES)}")
    return chosen


def train_steps() -> int:
    """The loaded profile's `TRAIN_STEPS` (profiles act_equiv did not define train like `dev`)."""
    return TRAIN_STEPS.get(settings.get_current_profile_name(), TRAIN_STEPS["dev"])


def settings_for(name: str | None) -> settings:
    """Hypothesis's settings of profile `name`: act_equiv's own from `PROFILES` (registered or not), another from
    Hypothesis's registry; None: the loaded profile's."""
    if name is None:
        return settings()
    return settings(**PROFILES[name]) if name in PROFILES else settings.get_profile(name)


def scope(name: str | None = None) -> dict[str, Any]:
    """Strategy keywords for the profile `name`, else the loaded one (profiles act_equiv did not define draw like
    `dev`)."""
    return SCOPES.get(name or settings.get_current_profile_name(), SCOPES["dev"])
