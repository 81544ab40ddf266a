"""Running forms: pinned numerics, compiled forms that prove they ran, and the runner that records what every form
of a case produced. Nothing here judges: the oracle (`act_equiv.oracle`) reads the records."""
