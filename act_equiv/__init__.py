"""act_equiv: property-based differential testing of ACT's legacy, tensor-concat and compiled forms.

The public names load on first use (`act_equiv.ACT` imports torch then), so that `import act_equiv` — which the
pytest plugin's entry point does in every pytest session — costs nothing.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from act_equiv.config import ACTConfig, ConfigError

if TYPE_CHECKING:
    from act_equiv import strategies
    from act_equiv.gate import Gate
    from act_equiv.models import ACT, ACTPolicy, LegacyACT, build
    from act_equiv.settings import Settings
    from act_equiv.stages import check, search
    from act_equiv.targets import resolve

__all__ = ["ACT", "ACTConfig", "ACTPolicy", "ConfigError", "Gate", "LegacyACT", "Settings", "__version__", "build",
           "check", "resolve", "search", "strategies"]
__version__ = "0.1.0"

_LAZY = {"ACT": "act_equiv.models", "ACTPolicy": "act_equiv.models", "LegacyACT": "act_equiv.models",
         "build": "act_equiv.models", "Gate": "act_equiv.gate", "Settings": "act_equiv.settings",
         "check": "act_equiv.stages", "search": "act_equiv.stages",
         "resolve": "act_equiv.targets"}


def __getattr__(name: str) -> Any:
    if name == "strategies":
        return import_module("act_equiv.strategies")
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
