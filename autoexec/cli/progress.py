"""What an operator sees of a CLI job: progress per phase and, at the end, the nodes that failed.

On a terminal :mod:`autoexec.cli.progress_live` draws a live ``rich`` view (progress_show.py imports it only then);
elsewhere :class:`PlainView` prints one line per phase end and the same final summary. Both are
sinks of the engine's one typed event stream (beside the Prefect record's spool, through
``engine.run.Tee``). Neither writes to ``console.txt``, whose lines stay exactly the original's.
A view is quick, thread-safe and never raises into the job.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from autoexec.jobdir.logs import last_error_line
from autoexec.models.status import Status

if TYPE_CHECKING:
    from autoexec.events.stream import Event


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


@dataclass
class PhaseProgress:
    name: str
    group_no: int = 0
    total: int = 0
    done: int = 0
    failed: int = 0
    running: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    status: str = Status.RUNNING

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started


def error_text(end: NodeEnd) -> str:
    """The runner's reason and the tool's last line, whichever exist."""
    tail = last_error_line(end.log, skip=end.message)
    parts = [p for p in (end.message, tail) if p]
    if len(parts) == 2 and parts[1] in parts[0]:
        parts = parts[:1]
    return " | ".join(parts)


class JobProgress:
    """Thread-safe counters per phase and the failed/aborted nodes, in the order things end."""

    owns_terminal = False
    """Draws on the terminal itself: the console log is not echoed raw beside it."""

    def __init__(self, job_id: str, job_root: str, console_log: str, verbose: bool = False) -> None:
        self.job_id = job_id
        self.job_root = job_root
        self.console_log = console_log
        self.verbose = verbose
        self.phases: dict[str, PhaseProgress] = {}
        self.problems: list[NodeEnd] = []
        self.node_counts: dict[str, int] = {}
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self._nodes: dict[int, Event] = {}
        """Event key -> the node's start event (kept as emitted: no sink changes an event), until its
        end event."""

    # --- EventSink -----------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        try:
            self._on(event)
        except Exception:  # noqa: BLE001 - a display problem never reaches the job
            pass

    def _on(self, event: Event) -> None:
        kind = event.get("event")
        if kind == "phase_start":
            self.phase_started(event["group"], event["phase"], event["nodes"])
        elif kind in ("node_start", "batch_node_start"):
            with self.lock:
                self._nodes[event["key"]] = event
            self.node_started(event["phase"], event["node"])
        elif kind in ("node_end", "batch_node_end"):
            with self.lock:
                start = self._nodes.pop(event["key"], None)
            if start is not None:
                self.node_finished(NodeEnd(start["phase"], start["node"], start.get("label", ""), event["status"],
                                           event.get("duration", 0.0), event.get("exit_code"),
                                           event.get("message", ""), start.get("log", "")))
        elif kind == "node_skip":
            self.node_finished(NodeEnd(event["phase"], event["node"], event.get("label", ""), "skipped"))
        elif kind == "phase_end":
            self.phase_finished(event["phase"], event["status"])

    def _phase(self, name: str) -> PhaseProgress:
        phase = self.phases.get(name)
        if phase is None:
            phase = self.phases[name] = PhaseProgress(name)
        return phase

    # --- what the events say -------------------------------------------------------------
    def phase_started(self, group_no: int, phase: str, total: int) -> None:
        with self.lock:
            p = self._phase(phase)
            p.group_no, p.total, p.status, p.ended = group_no, total, Status.RUNNING, None
        self.changed(phase)

    def node_started(self, phase: str, node: str) -> None:
        with self.lock:
            self._phase(phase).running.add(node)
        self.changed(phase)

    def node_finished(self, end: NodeEnd) -> None:
        with self.lock:
            p = self._phase(end.phase)
            p.running.discard(end.node)
            p.done += 1
            self.node_counts[end.status] = self.node_counts.get(end.status, 0) + 1
            if Status.of(end.status).failed:
                p.failed += 1
                self.problems.append(end)
        try:
            self.node_ended(end)
        except Exception:  # noqa: BLE001 - a display problem never reaches the job
            pass
        self.changed(end.phase)

    def phase_finished(self, phase: str, status: str) -> None:
        with self.lock:
            p = self._phase(phase)
            p.status, p.ended = status, time.monotonic()
        try:
            self.phase_ended(p)
        except Exception:  # noqa: BLE001 - a display problem never reaches the job
            pass
        self.changed(phase)

    # --- for the views -------------------------------------------------------------------
    def changed(self, phase: str) -> None:
        """A phase's counters changed (live views redraw)."""

    def node_ended(self, end: NodeEnd) -> None:
        """A node ended (live views print it)."""

    def phase_ended(self, phase: PhaseProgress) -> None:
        """A phase ended (plain views print one line)."""

    def console_line(self, line: str) -> None:
        """A console log line (hook of the console log; views print some of them)."""

    def start(self) -> None:
        pass

    def close(self, status: str, message: str = "") -> None:
        pass

    # --- the summary ---------------------------------------------------------------------
    def summary_rows(self) -> list[tuple[str, str, str, str, str, str]]:
        """(phase, node, status, exit status, last error, log) of every failed or aborted node."""
        with self.lock:
            problems = list(self.problems)
        rows = []
        for end in problems:
            log = os.path.relpath(end.log, self.job_root) if end.log else ""
            rows.append((end.phase, end.node, end.status, "" if end.exit_code is None else str(end.exit_code),
                         error_text(end), log))
        return rows

    def headline(self, status: str, message: str) -> str:
        with self.lock:
            counts = dict(self.node_counts)
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no node ran"
        text = f"job {self.job_id} {status} after {time.monotonic() - self.started:.1f}s ({parts})"
        return f"{text}: {message}" if message and status == Status.FAILED else text

    def phase_line(self, p: PhaseProgress) -> str:
        return (f"phase {p.name}: {p.status}, {p.done}/{p.total} done, {p.failed} failed, "
                f"{p.elapsed:.1f}s")


class PlainView(JobProgress):
    """No terminal: one line per phase end and a plain-text summary, for captured output."""

    def __init__(self, job_id: str, job_root: str, console_log: str, verbose: bool = False,
                 out: TextIO | None = None) -> None:
        super().__init__(job_id, job_root, console_log, verbose)
        self.out = out or sys.stdout
        self._out_lock = threading.Lock()

    def _print(self, text: str) -> None:
        with self._out_lock:
            try:
                self.out.write(text + "\n")
                self.out.flush()
            except (OSError, ValueError):
                pass

    def console_line(self, line: str) -> None:
        if self.verbose:
            self._print(line)

    def phase_ended(self, phase: PhaseProgress) -> None:
        self._print(f"autoexec: {self.phase_line(phase)}")

    def close(self, status: str, message: str = "") -> None:
        for line in plain_summary(self, status, message):
            self._print(line)


def plain_summary(view: JobProgress, status: str, message: str) -> list[str]:
    lines = [f"autoexec: {view.headline(status, message)}"]
    rows = view.summary_rows()
    if rows:
        header = ("PHASE", "NODE", "STATUS", "EXIT", "LAST ERROR", "LOG")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        lines.append("Failed and aborted nodes:")
        for row in [header, *rows]:
            lines.append("  " + "  ".join(row[i].ljust(widths[i]) for i in range(4)) + f"  {row[4]}"
                         + (f"  ({row[5]})" if row is not header and row[5] else ""))
    lines.append(f"Console log: {view.console_log}")
    lines.append(f"Node logs:   {view.job_root}/log/<phase>/<node>.txt")
    return lines
