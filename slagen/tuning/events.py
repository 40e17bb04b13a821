"""Progress of a tuning run, as events for a listener (a progress bar, a log); the library never prints.

Workers report raw events; one `Progress` in the owning process folds them into running totals, so
every event a listener sees carries trials done / planned, the best time so far of its search and the
failures of the whole run by kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable

EVENT_KINDS = ("start", "search_start", "trial", "reused", "rejected", "search_done", "done")


@dataclass(frozen=True)
class TuneEvent:
    kind: str
    search: int = -1  # index into the run's searches (op x bucket x dtype); -1 for run-wide events
    op: str = ""
    shape_bucket: str = ""
    dtype: str = ""
    config: dict[str, Any] | None = None
    status: str | None = None
    median_ms: float | None = None
    message: str = ""
    # Filled in by Progress:
    done: int = 0
    total: int | None = None
    best_ms: float | None = None
    failures: dict[str, int] = field(default_factory=dict)
    # search_done only:
    stats: dict[str, Any] | None = None


Listener = Callable[[TuneEvent], None]


class Progress:
    """Running totals over all searches and workers; `apply` completes an event and passes it on."""

    def __init__(self, searches: int, planned: list[int | None], listener: Listener | None) -> None:
        self.listener = listener
        self.done = 0
        self.total = None if any(p is None for p in planned) else sum(p for p in planned if p is not None)
        self.failures: dict[str, int] = {}
        self.best = [math.inf] * searches
        self.by_status: list[dict[str, int]] = [{} for _ in range(searches)]
        self.reused = [0] * searches
        self.rejected = [0] * searches
        self.stats: list[list[dict[str, Any]]] = [[] for _ in range(searches)]

    def apply(self, event: TuneEvent) -> TuneEvent:
        i = event.search
        if event.kind == "trial":
            self.done += 1
            counts = self.by_status[i]
            counts[event.status or "?"] = counts.get(event.status or "?", 0) + 1
            if event.status != "ok":
                self.failures[event.status or "?"] = self.failures.get(event.status or "?", 0) + 1
            elif event.median_ms is not None:
                self.best[i] = min(self.best[i], event.median_ms)
        elif event.kind == "reused":
            self.reused[i] += 1
            if event.status == "ok" and event.median_ms is not None:
                self.best[i] = min(self.best[i], event.median_ms)
        elif event.kind == "rejected":
            self.rejected[i] += 1
        elif event.kind == "search_done" and event.stats is not None:
            self.stats[i].append(event.stats)
        best = self.best[i] if i >= 0 and math.isfinite(self.best[i]) else None
        full = replace(event, done=self.done, total=self.total, best_ms=best, failures=dict(self.failures))
        if self.listener is not None:
            self.listener(full)
        return full
