"""What the parts of one running job share while it runs, owned by that run, not by the job's runtime.

The engine's run (:func:`autoexec.engine.run.run_engine`) makes one :class:`RunLinks` and hands it
down: the phase runner and node executor report into its event stream, node runs enter its
running-node table (the job socket routes a tool's ``informNodeWaitInput`` there), and grayScale
groups wait on its round barrier (the job socket releases it on the console's go-ahead).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Unpack

from autoexec.events.stream import Event, Kind


class Emit(Protocol):
    def __call__(self, kind: Kind, **fields: Unpack[Event]) -> None: ...


class RoundBarrier:
    """grayScale rounds across runners: wait until the console says round N of a phase may go on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._released: set[tuple[str, int]] = set()

    def release(self, phase: str, round_no: int) -> None:
        with self._cond:
            self._released.add((phase, int(round_no)))
            self._cond.notify_all()

    def wait(self, phase: str, round_no: int, timeout: float, stop: Callable[[], bool]) -> bool:
        end = time.monotonic() + timeout
        with self._cond:
            while (phase, round_no) not in self._released:
                remaining = end - time.monotonic()
                if remaining <= 0 or stop():
                    return False
                self._cond.wait(min(0.5, remaining))
            return True


class WaitsInput(Protocol):
    def wait_input(self, interact: dict[str, Any] | None) -> None: ...


class RunningNodes:
    """(phase, resourceId) -> the node run executing it, while it runs (thread-safe)."""

    def __init__(self) -> None:
        self._runs: dict[tuple[str, int], WaitsInput] = {}
        self._lock = threading.Lock()

    def enter(self, phase: str, resource_id: int, run: WaitsInput) -> None:
        with self._lock:
            self._runs[(phase, resource_id)] = run

    def leave(self, phase: str, resource_id: int) -> None:
        with self._lock:
            self._runs.pop((phase, resource_id), None)

    def get(self, phase: str, resource_id: int) -> WaitsInput | None:
        with self._lock:
            return self._runs.get((phase, resource_id))


def _drop(kind: Kind, **fields: Unpack[Event]) -> None:
    pass


@dataclass(frozen=True)
class RunLinks:
    emit: Emit = _drop
    """The run's typed event stream (:mod:`autoexec.events.stream`)."""
    running: RunningNodes = field(default_factory=RunningNodes)
    barrier: RoundBarrier = field(default_factory=RoundBarrier)
