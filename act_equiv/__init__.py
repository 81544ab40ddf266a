"""act_equiv: property-based differential testing of ACT's legacy, tensor-concat and compiled forms."""

from act_equiv.config import ACTConfig, ConfigError
from act_equiv.models import ACT, ACTPolicy, LegacyACT, build

__all__ = ["ACT", "ACTConfig", "ACTPolicy", "ConfigError", "LegacyACT", "__version__", "build"]
__version__ = "0.1.0"
