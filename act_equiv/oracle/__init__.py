"""The oracle: records of a run in, verdicts as data out. `judge` decides which pairs to compare and what else to
find, `compare` compares tensors under a tolerance from `tolerance`'s one table, `verdict` holds the results."""
