"""Reading a job's event spool (:mod:`autoexec.recording`) while the job still writes it.

The recorder replays the spool in order (``next``), except node and batch outcomes, which are
handed straight to the task run waiting for them (``outcome``): a node may well end before the
recorder, still importing Prefect, has even started its task run. A job process that dies
without its last events gets them made up here (``crashed``), so no run stays Running forever.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

OUTCOME_EVENTS = frozenset({"node_end", "batch_end"})


def process_alive(pid: int, start_time: str | None) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return False
    return start_time is None or fields[19] == start_time


class Feed:
    def __init__(self, path: Path, poll: float = 0.02, alive: Callable[[int, str | None], bool] = process_alive) -> None:
        self.path = path
        self.poll = poll
        self._alive = alive
        self._cond = threading.Condition()
        self._queue: deque[dict[str, Any]] = deque()
        self._outcomes: dict[int, dict[str, Any]] = {}
        self._open_keys: set[int] = set()
        self._open_groups: list[int] = []
        self.job: dict[str, Any] | None = None
        self.ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tail, name="autoexec-feed", daemon=True)

    def start(self) -> "Feed":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    # --- consumer side ------------------------------------------------------------------
    def first(self, timeout: float) -> dict[str, Any] | None:
        """The ``job_start`` event (who runs the job), or ``None`` if it never came."""
        with self._cond:
            self._cond.wait_for(lambda: self.job is not None or self.ended, timeout)
            return self.job

    def next(self) -> dict[str, Any]:
        with self._cond:
            self._cond.wait_for(lambda: bool(self._queue))
            return self._queue.popleft()

    def outcome(self, key: int) -> dict[str, Any]:
        with self._cond:
            self._cond.wait_for(lambda: key in self._outcomes)
            return self._outcomes.pop(key)

    # --- producer side ------------------------------------------------------------------
    def _tail(self) -> None:
        tail = b""
        idle_since = time.monotonic()
        with open(self.path, "rb") as fh:
            while not self._stop.is_set() and not self.ended:
                chunk = fh.read(1 << 16)
                if chunk:
                    idle_since = time.monotonic()
                    lines = (tail + chunk).split(b"\n")
                    tail = lines.pop()
                    for line in lines:
                        self._take(line)
                    continue
                if time.monotonic() - idle_since > 1.0 and self.job is not None and \
                        not self._alive(int(self.job.get("pid") or 0), self.job.get("startTime")):
                    if not fh.read(1):  # nothing written after all: it is really gone
                        self._crashed("the job process ended without finishing its record")
                        return
                    fh.seek(-1, os.SEEK_CUR)
                    continue
                if self.job is None and time.monotonic() - idle_since > 30:
                    self._crashed("the job never started its record")
                    return
                time.sleep(self.poll)

    def _take(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return  # a torn last line of a crashed writer
        if not isinstance(event, dict):
            return
        self._put(event)

    def _put(self, event: dict[str, Any]) -> None:
        kind = event.get("e")
        with self._cond:
            if kind == "job_start":
                self.job = event
            elif kind in OUTCOME_EVENTS:
                self._open_keys.discard(event.get("k"))
                self._outcomes[event.get("k")] = event  # type: ignore[index]
            else:
                if kind in ("node_start", "batch_start"):
                    self._open_keys.add(event.get("k"))  # type: ignore[arg-type]
                elif kind == "group_start":
                    self._open_groups.append(event.get("group"))  # type: ignore[arg-type]
                elif kind == "group_end" and self._open_groups:
                    self._open_groups.pop()
                elif kind == "job_end":
                    self.ended = True
                self._queue.append(event)
            self._cond.notify_all()

    def _crashed(self, why: str) -> None:
        """Close whatever is open, innermost first, as failed."""
        for key in sorted(self._open_keys):
            self._put({"e": "node_end", "k": key, "status": "failed", "summary": {"message": why}, "crashed": True})
        for group in reversed(list(self._open_groups)):
            self._put({"e": "group_end", "group": group, "failed": True, "phases": {}, "crashed": True})
        if self.job is None:
            with self._cond:
                self.ended = True
                self._cond.notify_all()
            return
        self._put({"e": "job_end", "status": "crashed", "summary": {"message": why}, "crashed": True})
