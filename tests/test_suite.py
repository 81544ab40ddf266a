"""act_equiv's property suite (act_equiv/suite.py), run in this repo against the default target (concat)."""

from act_equiv.suite import *  # noqa: F403
