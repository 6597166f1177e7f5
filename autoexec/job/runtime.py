"""Everything one job invocation shares across groups, phases and nodes, by owner.

Built once by the job loader (frozen: no field is assigned after construction) and handed down;
modules below it never reach back up to the CLI or the flow. It only composes the job's parts:
the immutable :class:`JobSpec` (what was asked), the :class:`JobEnv` (the job's variables, one
write path), the :class:`ConsoleServices` (what the op path asks the console for), the notifier
(callbacks), the control flags, the console log and the secrets masker. Live tables of a running
job (running nodes, round barrier, event stream) belong to the run (:mod:`autoexec.job.runlinks`),
connections and pools to the object that uses them.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from autoexec.conf.config import Config
from autoexec.job.control import JobControl
from autoexec.jobdir.layout import JobDir
from autoexec.job.env import JobEnv
from autoexec.jobdir.lock import JobLock
from autoexec.job.spec import JobSpec
from autoexec.jobdir.logs import ConsoleLog
from autoexec.conf.masking import Masker
from autoexec.models.nodes import Node, NodesHeader
from autoexec.models.params import Params, Phase
from autoexec.models.status import Status
from autoexec.events.notify import Notifier, PhaseCounts
from autoexec.job.services import ConsoleServices
from autoexec.jobdir.store import Mirror, NodeOutput
from autoexec.transports.registry import TransportTable, default_transports

@dataclass(frozen=True, eq=False)
class JobRuntime:
    spec: JobSpec
    env: JobEnv
    control: JobControl
    notifier: Notifier
    console: ConsoleLog
    services: ConsoleServices
    masker: Masker
    """Every secret known for this job -> ``******`` in logs, run logs, MongoDB documents, messages."""
    mirror: Mirror | None = None
    runner_output: NodeOutput | None = None
    job_lock: JobLock | None = None
    """The job's held lock and pid record (``joblock``); runs inside a flow add their flow-run id."""
    transports: TransportTable = field(default_factory=default_transports)
    """Protocol name -> how to reach a node of it (``transports.registry``)."""

    # --- the spec, read-only ---------------------------------------------------------------------
    @property
    def job_id(self) -> str:
        return self.spec.job_id

    @property
    def jobdir(self) -> JobDir:
        return self.spec.jobdir

    @property
    def params(self) -> Params:
        return self.spec.params

    @property
    def config(self) -> Config:
        return self.spec.config

    @property
    def exec_user(self) -> str:
        return self.spec.exec_user

    @property
    def force(self) -> bool:
        return self.spec.force

    @property
    def runner_id(self) -> int:
        return self.spec.runner_id

    @property
    def dev_mode(self) -> bool:
        return self.spec.dev_mode

    @property
    def max_parallel(self) -> int:
        return self.spec.max_parallel

    @property
    def decrypt(self) -> Callable[[str], str]:
        return self.spec.decrypt


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
