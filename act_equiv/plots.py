"""Pictures of what a run measured, for people who would rather look than read: per-step error of a training
trajectory pair against the float64 envelope. Optional: matplotlib comes with `pip install 'act-equiv[plots]'`;
without it nothing is drawn and the same numbers stay in summary.md and report.json. Imports no torch."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

__all__ = ["PLOTS_EXTRA", "available", "trajectory"]

PLOTS_EXTRA = "pip install 'act-equiv[plots]'"


def available() -> bool:
    """Whether matplotlib is installed."""
    return importlib.util.find_spec("matplotlib") is not None


def trajectory(entry: dict[str, Any], path: Path) -> bool:
    """Draw one trajectory pair (`report.trajectories`' entry): max |diff| and max relative |diff| per step, each
    beside the envelope (eager float32 against its float64 run), on a log scale; False where matplotlib is missing."""
    if not available():
        return False
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot as plt

    steps = [row["step"] for row in entry["steps"]]
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    for axis, measure, title in ((axes[0], "max_abs", "max |diff|"), (axes[1], "max_rel", "max |diff| / max |x|")):
        axis.plot(steps, [_positive(row.get(measure)) for row in entry["steps"]], "o-", label=entry["pair"])
        if any(f"envelope_{measure}" in row for row in entry["steps"]):
            axis.plot(steps, [_positive(row.get(f"envelope_{measure}")) for row in entry["steps"]], "s--",
                      color="grey", label="float64 envelope (eager float32 vs float64)")
        axis.set_yscale("log")
        axis.set_xlabel("optimizer step")
        axis.set_title(title)
        axis.set_xticks(steps)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    figure.suptitle(f"{entry['level']}: {entry['class']} ({entry['case']})", fontsize=8)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def _positive(value: float | None) -> float:
    """A log axis cannot show 0 (a bitwise step): drawn as nothing."""
    return value if value else float("nan")
