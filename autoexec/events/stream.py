"""The engine's event stream: what a job reports while it runs, for whoever records or shows it.

A cross-process contract (spool files outlive upgrades), so every event carries a version ``v``
and readable keys, and readers ignore keys they do not know. The event kinds: docs/design.md."""
from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Literal, TypedDict, Unpack, cast

from autoexec.models.status import Status

VERSION = 1

Kind = Literal["job_start", "group_start", "phase_start", "node_start", "node_end", "node_skip", "batch_start",
               "batch_node_start", "batch_node_end", "batch_end", "phase_counts", "phase_end", "group_end",
               "job_end"]


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
    batch: int
    # outcomes
    status: str
    exit_code: int | None
    message: str
    duration: float
    warn_count: int
    failure_kind: str
    """node_end of a node whose remote op failed: connect, auth, timeout, cancelled, remote_exit, other."""
    counts: Counts
    phases: Mapping[str, str]
    groups: Mapping[str, Mapping[str, str]]
    crashed: bool


def make(kind: Kind, **fields: Unpack[Event]) -> Event:
    event: Event = {"v": VERSION, "event": kind, "time": time.time()}
    event.update(fields)
    return event


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
    return cast(Event, event)  # checked just above as far as a reader relies on; unknown keys are ignored


def counts_from(raw: dict[str, int]) -> Counts:
    """The phase runner's counters under readable names."""
    return Counts(succeed=raw.get("suc", 0), failed=raw.get("fail", 0), aborted=raw.get("abort", 0),
                  ignored=raw.get("ignore", 0), skipped=raw.get("skip", 0), paused=raw.get("pause", 0))


def outcome_of(phases: Mapping[str, str]) -> Status:
    """One status for a set of phase statuses: what went worst."""
    return Status.worst(phases.values())
