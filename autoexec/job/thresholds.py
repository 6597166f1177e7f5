"""Failure thresholds: how many failed nodes a phase tolerates before the job stops starting nodes.

The original stops handing out nodes at the first failure; that stays the default. A phase (or
the whole job, as the default for its phases) may declare ``maxFailCount`` (failed nodes
tolerated) and/or ``maxFailPercent`` (of the nodes handed to one dispatch: a oneShot phase's
nodes, or one grayScale round's batch). Once a failure takes the count past either limit, no new
node starts anywhere in the job, running nodes finish, and the job ends failed with the reason.
Tolerated failures still count: the phase and the job end ``failed``, they only keep running.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FailLimit:
    max_count: int | None = None
    max_percent: float | None = None

    @property
    def tolerant(self) -> bool:
        return self.max_count is not None or self.max_percent is not None

    @classmethod
    def of(cls, phase: Any, job: Any) -> "FailLimit":
        """The phase's own limits, else the job's (``maxFailCount``/``maxFailPercent`` fields)."""
        own = cls(getattr(phase, "maxFailCount", None), getattr(phase, "maxFailPercent", None))
        if own.tolerant:
            return own
        return cls(getattr(job, "maxFailCount", None), getattr(job, "maxFailPercent", None))

    def exceeded(self, failed: int, total: int) -> str | None:
        """Why ``failed`` of ``total`` is past the limit, or ``None`` while it is tolerated."""
        if not self.tolerant:
            return f"{failed} of {total} node(s) failed" if failed else None
        if self.max_count is not None and failed > self.max_count:
            return f"{failed} of {total} node(s) failed, more than maxFailCount {self.max_count}"
        if self.max_percent is not None and total > 0 and failed * 100.0 > self.max_percent * total:
            return (f"{failed} of {total} node(s) failed ({failed * 100.0 / total:.0f}%), "
                    f"more than maxFailPercent {self.max_percent:g}")
        return None


class FailGate:
    """Failed nodes of one dispatch (a phase, or one grayScale round of it), each counted once."""

    def __init__(self, limit: FailLimit, total: int, scope: str) -> None:
        self.limit = limit
        self.total = total
        self.scope = scope
        self._failed: set[str] = set()
        self._lock = threading.Lock()

    def add(self, node: str) -> str | None:
        """Counts ``node`` as failed; the reason once the limit is exceeded (``None`` if tolerated)."""
        with self._lock:
            self._failed.add(node)
            why = self.limit.exceeded(len(self._failed), self.total)
        return f"{self.scope}: {why}" if why else None

    @property
    def failed(self) -> int:
        with self._lock:
            return len(self._failed)


def halt_line(why: str) -> str:
    """The console log's line when a failure passes a threshold."""
    return f"ERROR: Failure threshold exceeded, {why}; no new node starts."
