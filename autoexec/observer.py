"""What a watcher of a running job (the terminal progress view) is told, and when.

A small, Prefect-free seam fed by the phase runner and the node executor themselves, so it works
the same for CLI runs, in-process flow runs and batch phases, and does not depend on the shape of
the events recorded into Prefect. Calls come from node threads, in the order things finish; an
observer must be quick and thread-safe, and must never raise into the job.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class NodeEnd:
    """One node finished (or was settled without running) in one phase."""

    phase: str
    node: str
    """``<host>-<port>-<resourceId>``, as in the job directory's file names."""
    label: str
    status: str
    """``succeed``, ``failed``, ``ignored``, ``paused``, ``aborted`` or ``skipped``."""
    duration: float = 0.0
    exit_code: int | None = None
    message: str = ""
    log: str = ""
    """Path of the node's log in this phase ('' when it did not run)."""


class JobObserver(Protocol):
    def phase_started(self, group_no: int, phase: str, total: int) -> None: ...

    def node_started(self, phase: str, node: str) -> None: ...

    def node_finished(self, end: NodeEnd) -> None: ...

    def phase_finished(self, phase: str, status: str) -> None: ...


class NullObserver:
    """Nobody watching (deployment runs, tests, non-CLI callers)."""

    def phase_started(self, group_no: int, phase: str, total: int) -> None:
        pass

    def node_started(self, phase: str, node: str) -> None:
        pass

    def node_finished(self, end: NodeEnd) -> None:
        pass

    def phase_finished(self, phase: str, status: str) -> None:
        pass
