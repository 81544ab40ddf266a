"""Two sides at once: a request to a worker waits on its channel, so the other side can work meanwhile.

Only calls that do not share this process's torch state run side by side: a worker side's request (its process
computes; this thread only sends and waits) beside anything, never two in-process sides (they share the global
random generator the forms are seeded from). Outcomes come back in call order, exceptions included, so that
whatever records them does so in the same order as a sequential run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Outcome", "at_once"]


@dataclass
class Outcome:
    """What one call returned or raised."""

    value: Any = None
    error: BaseException | None = None

    def get(self) -> Any:
        """The value, or the exception raised again."""
        if self.error is not None:
            raise self.error
        return self.value


def _outcome(call: Callable[[], Any]) -> Outcome:
    try:
        return Outcome(call())
    except BaseException as error:  # handed back to the caller, who raises it again in order
        return Outcome(error=error)


def at_once(calls: list[tuple[Callable[[], Any], bool]]) -> list[Outcome]:
    """Run each `(call, in_worker)`: the calls whose flag is true in threads of their own, the others one after
    another in this thread meanwhile. Returns every outcome in call order."""
    outcomes: list[Outcome | None] = [None] * len(calls)
    threaded = [in_worker and len(calls) > 1 for _, in_worker in calls]
    threads = []
    for index, (call, _) in enumerate(calls):
        if threaded[index]:
            def work(i: int = index, c: Callable[[], Any] = call) -> None:
                outcomes[i] = _outcome(c)

            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            threads.append(thread)
    for index, (call, _) in enumerate(calls):
        if not threaded[index]:
            outcomes[index] = _outcome(call)
    for thread in threads:
        thread.join()
    return [outcome for outcome in outcomes if outcome is not None]
