"""The engine's event stream: what a job reports while it runs, for whoever records or shows it.

It is a cross-process contract (a CLI job writes it to a spool file that the machine's recorder
reads, possibly after an upgrade), so every event carries a version ``v`` and readable keys, and a
reader ignores keys it does not know. The same events feed the Prefect record of a deployment
run through an in-process queue: one producer (the engine, :mod:`autoexec.recording`), one
definition of the record (:mod:`autoexec.flows.mirror`).

Kinds, in the order a job emits them::

    job_start   job_id exec_user pid start_time width console console_offset job_dir
    group_start group
    node_start  key group phase node label log        one (phase, node) handed out
    node_end    key status exit_code message duration warn_count
    batch_start key group phase label nodes           a phase too large for one record per node
    batch_end   key status counts                     counts of this batch only
    phase_counts group phase status counts             after each dispatch (a phase, or a round of it)
    group_end   group status phases
    job_end     status exit_code message groups
"""
from __future__ import annotations

import json
import time
from typing import Any, Literal, TypedDict

VERSION = 1

Kind = Literal["job_start", "group_start", "node_start", "node_end", "batch_start", "batch_end",
               "phase_counts", "group_end", "job_end"]


class Counts(TypedDict):
    succeed: int
    failed: int
    aborted: int
    ignored: int
    skipped: int
    paused: int


class Event(TypedDict, total=False):
    v: int
    event: Kind
    time: float
    # job_start
    job_id: str
    exec_user: str
    pid: int
    start_time: str | None
    width: int
    console: str
    console_offset: int
    job_dir: str
    # groups, phases, nodes
    group: int
    key: int
    phase: str
    node: str
    label: str
    log: str
    nodes: int
    # outcomes
    status: str
    exit_code: int | None
    message: str
    duration: float
    warn_count: int
    counts: Counts
    phases: dict[str, str]
    groups: dict[str, dict[str, str]]
    crashed: bool


def make(kind: Kind, **fields: Any) -> Event:
    event: dict[str, Any] = {"v": VERSION, "event": kind, "time": time.time()}
    event.update(fields)
    return event  # type: ignore[return-value]


def encode(event: Event) -> bytes:
    return (json.dumps(event, separators=(",", ":"), default=str) + "\n").encode()


def decode(line: bytes) -> Event | None:
    """``None`` for a torn last line of a crashed writer or a line from a newer major version."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str) or int(event.get("v", 0)) > VERSION:
        return None
    return event  # type: ignore[return-value]


def counts_from(raw: dict[str, int]) -> Counts:
    """The phase runner's counters under readable names."""
    return Counts(succeed=raw.get("suc", 0), failed=raw.get("fail", 0), aborted=raw.get("abort", 0),
                  ignored=raw.get("ignore", 0), skipped=raw.get("skip", 0), paused=raw.get("pause", 0))


def outcome_of(phases: dict[str, str]) -> str:
    """One status for a set of phase statuses: what went worst."""
    values = set(phases.values())
    for status in ("aborted", "failed", "paused"):
        if status in values:
            return status
    return "succeed"
