"""Everything one job invocation shares across groups, phases and nodes.

Built once by the job loader and handed down; modules below it never reach back up to the CLI
or the flow.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from autoexec.config import Config
from autoexec.control import JobControl
from autoexec.jobdir import JobDir
from autoexec.joblock import JobLock
from autoexec.logs import ConsoleLog
from autoexec.masking import Masker
from autoexec.models.nodes import Node, NodesHeader
from autoexec.models.params import Params, Phase
from autoexec.models.status import Status
from autoexec.notify import Notifier, PhaseCounts
from autoexec.observer import JobObserver, NullObserver
from autoexec.store import Mirror, NodeOutput


@dataclass
class JobRuntime:
    job_id: str
    jobdir: JobDir
    params: Params
    config: Config
    control: JobControl
    notifier: Notifier
    console: ConsoleLog
    exec_user: str = "anonymous"
    force: bool = False
    runner_id: int = 1
    base_env: dict[str, str] = field(default_factory=dict)
    mirror: Mirror | None = None
    phase_filter: set[str] | None = None
    group_filter: set[int] | None = None
    node_filter: set[int] | None = None
    round_filter: int | None = None
    """One grayScale round only (a part of a Prefect-coordinated job): the coordinator, not the
    console, is the barrier between runners, so no informRoundEnded wait."""
    max_parallel: int = 64
    no_fire_next: bool = False
    decrypt: Callable[[str], str] = lambda value: value
    script_fetcher: Callable[..., Path] | None = None
    """Production mode: downloads a custom script by scriptId (console); devmode: None."""
    file_fetcher: Callable[[int | str], str | None] | None = None
    """Links a console file id into ``<job>/file/`` and returns its name (production mode)."""
    script_libs: Callable[[Any], list[Path]] | None = None
    """Production mode: the library files a fetched custom script uses (shipped to remote hosts)."""
    account_lookup: Callable[[Node, str, str, str], str] | None = None
    """Production mode: ``(node, username, accountId, protocol) -> password`` (console getAccount)."""
    nodes_refresh: Callable[[str, str, int], None] | None = None
    """Production mode: ``(nodeFrom, phase, groupNo)`` re-downloads a phase/group nodes file."""
    runner_output: NodeOutput | None = None
    env_lock: threading.Lock = field(default_factory=threading.Lock)
    round_barrier: Any = None
    """Set by the job socket: multi-runner grayScale rounds wait on it."""
    dev_mode: bool = False
    global_lock_call: Callable[[dict[str, Any]], Any] | None = None
    """Production mode: the console's global lock API; devmode tools are told it is absent."""
    running_nodes: dict[tuple[str, int], Any] = field(default_factory=dict)
    """(phase, resourceId) -> the NodeRun executing it: the job socket routes tool events there."""
    phase_counts: dict[str, Callable[[], PhaseCounts]] = field(default_factory=dict)
    """phase -> its live counters, for phase pushes triggered from outside the phase runner."""
    closers: list[Callable[[], None]] = field(default_factory=list)
    """Released after the job's last callback was flushed (console session, …)."""
    masker: Masker = field(default_factory=Masker)
    """Every secret known for this job -> ``******`` in logs, run logs, MongoDB documents, messages."""
    child_env_templates: dict[tuple, Any] = field(default_factory=dict)
    """Runner-side tools' environments, built once per job and tool (``ops.childenv``)."""
    observer: JobObserver = field(default_factory=NullObserver)
    """Who watches the job's progress (the CLI's terminal view); told by phases and nodes."""
    job_lock: JobLock | None = None
    """The job's held lock and pid record (``joblock``); runs inside a flow add their flow-run id."""


@dataclass
class PhasePlan:
    """What one phase will do in this invocation: resolved before any node starts."""

    group_no: int
    phase: Phase
    index: int
    nodes_path: Path
    header: NodesHeader
    nodes: list[Node]
    on_runner: bool
    parallel: int

    @property
    def name(self) -> str:
        return self.phase.phaseName


@dataclass
class PhaseState:
    """Counters and status of one phase while it runs (thread-safe)."""

    plan: PhasePlan
    counts: dict[str, int] = field(default_factory=lambda: {"suc": 0, "fail": 0, "skip": 0, "ignore": 0,
                                                             "pause": 0, "abort": 0, "warn": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: bool = False
    status: str = Status.PENDING

    def add(self, key: str, warn: int = 0) -> None:
        with self.lock:
            self.counts[key] += 1
            self.counts["warn"] += warn

    def snapshot(self) -> PhaseCounts:
        with self.lock:
            c = dict(self.counts)
        return PhaseCounts(suc=c["suc"], fail=c["fail"] + c["abort"], skip=c["skip"], ignore=c["ignore"],
                           pause=c["pause"], warn=c["warn"])


def parallel_count(node_count: int, round_count: int | None, cap: int) -> int:
    """Nodes in flight: ``ceil(N / roundCount)``, and ``roundCount <= 0`` means all nodes at once
    (bounded by the global cap), not one at a time as in the original."""
    if node_count <= 0:
        return 1
    if not round_count or round_count <= 0:
        return max(1, min(node_count, cap))
    return max(1, min(math.ceil(node_count / round_count), cap))
