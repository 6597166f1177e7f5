"""One timer thread for all per-op time limits of the process.

Every local op has a limit (``job.maxExecSecs``, one day by default) that almost never fires; a
``threading.Timer`` per op started and cancelled a thread per node (a ``clone`` and a thread
bootstrap under the GIL each time). Here an op costs a heap push and a flag, and the single
thread sleeps until the earliest live deadline. Callbacks run on a thread of their own, so a
slow one (a kill waiting out its grace period) never delays another limit.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Callable


class Deadline:
    """A pending call; :meth:`cancel` is cheap and safe from any thread."""

    __slots__ = ("when", "seq", "callback")

    def __init__(self, when: float, seq: int, callback: Callable[[], None] | None) -> None:
        self.when = when
        self.seq = seq
        self.callback = callback

    def __lt__(self, other: "Deadline") -> bool:
        return (self.when, self.seq) < (other.when, other.seq)

    def cancel(self) -> None:
        if self.callback is not None:
            self.callback = None
            _scheduler.cancelled()


class _Scheduler:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[Deadline] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._dead = 0
        """Cancelled entries still in the heap; compacted when they are the majority."""

    def add(self, delay: float, callback: Callable[[], None]) -> Deadline:
        entry = Deadline(time.monotonic() + delay, next(self._seq), callback)
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="autoexec-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0] is entry:
                self._cond.notify()
        return entry

    def cancelled(self) -> None:
        with self._cond:
            self._dead += 1
            if self._dead > 64 and self._dead * 2 > len(self._heap):
                self._heap = [e for e in self._heap if e.callback is not None]
                heapq.heapify(self._heap)
                self._dead = 0

    def _run(self) -> None:
        while True:
            due: list[Callable[[], None]] = []
            with self._cond:
                while self._heap and self._heap[0].callback is None:
                    heapq.heappop(self._heap)
                    self._dead = max(0, self._dead - 1)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0].when - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                entry = heapq.heappop(self._heap)
                if entry.callback is not None:
                    due.append(entry.callback)
                    entry.callback = None
            for callback in due:
                threading.Thread(target=callback, name="autoexec-deadline", daemon=True).start()


_scheduler = _Scheduler()


def call_later(delay: float, callback: Callable[[], None]) -> Deadline:
    """Runs ``callback`` (on a new daemon thread) after ``delay`` seconds unless cancelled first."""
    return _scheduler.add(delay, callback)
