"""The engine as it ships: groups on plain thread pools, every state change an event.

Prefect costs too much per task run to sit on the node path (docs/performance.md), so the engine
never talks to Prefect: it emits typed events (:mod:`autoexec.events.stream`) that the Prefect record
(:mod:`autoexec.flows.record`) consumes. The per-node status files stay the source of truth."""
from __future__ import annotations

import itertools
import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, Unpack

from autoexec.events import stream as events
from autoexec.engine.jobloop import GroupRunner, JobOutcome, run_job
from autoexec.events.stream import Event, make
from autoexec.engine.executor import NodeResult
from autoexec.jobdir.fileio import AppendFile
from autoexec.engine.groups import GroupResult, run_group
from autoexec.jobdir.lock import proc_start_time
from autoexec.models.nodes import Node
from autoexec.models.params import Group
from autoexec.models.status import Status
from autoexec.engine.phase import Dispatch, PhaseRunner, execute_node
from autoexec.job.runlinks import RunLinks
from autoexec.job.runtime import JobRuntime, PhasePlan
from autoexec.conf.settings import load_settings


def node_tasks_max() -> int:
    """Phases with more nodes are recorded as one batch task run (see README, Performance)."""
    return load_settings().node_tasks_max


def spool_dir(home: Path) -> Path:
    return home / "prefect" / "spool"


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


class SpoolSink:
    """Append-only JSON lines, one ``os.write`` each on an ``O_APPEND`` descriptor: atomic per
    line for concurrent threads, never blocking on the reader, and still readable after a crash."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = AppendFile(path)

    def emit(self, event: Event) -> None:
        try:
            self._file.write(events.encode(event))
        except (OSError, ValueError):
            pass  # a full disk or a closed spool loses Prefect's copy only, never the job

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass


class QueueSink:
    """In-process hand-over to a consumer thread (a deployment's flow run)."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Event] = queue.SimpleQueue()

    def emit(self, event: Event) -> None:
        self.queue.put(event)


class ListSink:
    """Keeps the events (tests, and callers that want the stream after the job)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)


class Tee:
    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = sinks

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            sink.emit(event)


class _Stream:
    """One job's emitter: event keys, and what the job-end message needs to know."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self._keys = itertools.count(1)
        self._lock = threading.Lock()
        self.handed_out = 0
        """Nodes that really ran (not skipped as already done), per node record or inside batches."""
        self.skipped: dict[tuple[int, str], int] = {}

    def key(self) -> int:
        return next(self._keys)

    def ran(self, nodes: int) -> None:
        with self._lock:
            self.handed_out += nodes

    def emit(self, kind: events.Kind, **fields: Unpack[Event]) -> None:
        self.sink.emit(make(kind, **fields))


def node_label(node: Node) -> str:
    """What an operator recognises in a list of 50 task runs: name, address, resource id."""
    if node.resourceId == 0:
        return "runner"
    address = f"{node.host}:{node.port}" if node.port else node.host
    return f"{node.nodeName} {address} #{node.resourceId}" if node.nodeName else f"{address} #{node.resourceId}"


class _RecordedSubmit:
    """Per-node submit on the group's pool, framed by ``node_start``/``node_end`` events (inside a
    batch: ``batch_node_start``/``batch_node_end``, which the Prefect record leaves out)."""

    def __init__(self, rt: JobRuntime, stream: _Stream, pool: ThreadPoolExecutor, links: RunLinks,
                 runner: PhaseRunner, batch: int | None = None) -> None:
        self.rt, self.stream, self.pool, self.links = rt, stream, pool, links
        self.counts = runner.state.snapshot
        self.batch = batch

    def __call__(self, plan: PhasePlan, node: Node) -> Future[NodeResult]:
        key = self.stream.key()
        log = str(self.rt.jobdir.node_paths(plan.name, node.triple).log)
        if self.batch is None:
            self.stream.ran(1)
            self.stream.emit("node_start", key=key, group=plan.group_no, phase=plan.name, node=node.triple,
                             label=node_label(node), log=log)
        else:
            self.stream.emit("batch_node_start", key=key, group=plan.group_no, phase=plan.name, node=node.triple,
                             label=node_label(node), log=log, batch=self.batch)
        return self.pool.submit(self._run, key, plan, node)

    def _run(self, key: int, plan: PhasePlan, node: Node) -> NodeResult:
        result = NodeResult(node=node.triple, status=Status.FAILED, message="node raised")
        try:
            result = execute_node(self.rt, plan, node, self.links, self.counts)
        finally:
            end: events.Event = {"key": key, "status": result.status, "exit_code": result.exit_code,
                                 "message": result.message, "duration": round(result.duration, 3),
                                 "warn_count": result.warn_count}
            if result.failure_kind:
                end["failure_kind"] = result.failure_kind
            self.stream.emit("node_end" if self.batch is None else "batch_node_end", **end)
        return result


def _counts(runner: PhaseRunner) -> dict[str, int]:
    with runner.state.lock:
        return dict(runner.state.counts)


def _recorded_dispatch(rt: JobRuntime, stream: _Stream, pool: ThreadPoolExecutor, links: RunLinks) -> Dispatch:
    def dispatch(runner: PhaseRunner, nodes: list[Node]) -> None:
        plan = runner.plan
        if len(nodes) <= node_tasks_max():
            runner.run_nodes(nodes, _RecordedSubmit(rt, stream, pool, links, runner))
        else:
            key = stream.key()
            stream.emit("batch_start", key=key, group=plan.group_no, phase=plan.name, nodes=len(nodes),
                        label=f"{node_label(nodes[0])} ..+{len(nodes) - 1}")
            before = _counts(runner)
            try:
                runner.run_nodes(nodes, _RecordedSubmit(rt, stream, pool, links, runner, batch=key))
            finally:
                after = _counts(runner)
                delta = events.counts_from({k: after[k] - before.get(k, 0) for k in after})
                stream.ran(sum(after[k] - before.get(k, 0) for k in after if k not in ("skip", "warn")))
                stream.emit("batch_end", key=key, counts=delta,
                            status=Status.worst(s for s, n in delta.items() if n))
        raw = _counts(runner)
        stream.skipped[(plan.group_no, plan.name)] = raw.get("skip", 0)
        stream.emit("phase_counts", group=plan.group_no, phase=plan.name, counts=events.counts_from(raw),
                    status=runner.state.status)

    return dispatch


def _group_status(rt: JobRuntime, result: GroupResult) -> Status:
    status = events.outcome_of(result.phases)
    if status is Status.SUCCEED and rt.control.aborting:
        return Status.ABORTED
    if status is Status.SUCCEED and rt.control.pausing:
        return Status.PAUSED
    return status


def recorded_group_runner(stream: _Stream, links: RunLinks) -> GroupRunner:
    def run(rt: JobRuntime, group: Group) -> GroupResult:
        stream.emit("group_start", group=group.groupNo)
        result = GroupResult(group.groupNo, {"?": Status.FAILED})
        try:
            with ThreadPoolExecutor(max(1, rt.max_parallel), thread_name_prefix=f"g{group.groupNo}") as pool:
                result = run_group(rt, group, _recorded_dispatch(rt, stream, pool, links), links)
        finally:
            stream.emit("group_end", group=group.groupNo, status=_group_status(rt, result), phases=result.phases)
        return result
    return run


def _end_message(outcome: JobOutcome, stream: _Stream) -> str:
    if outcome.message:
        return f"job {outcome.status}: {outcome.message}"
    if outcome.status == Status.SUCCEED and stream.handed_out == 0:
        if sum(stream.skipped.values()):
            return "nothing to do: every node had already succeeded (re-run with force to run them again)"
        return "nothing to do: no node to run on this runner"
    return f"job {outcome.status}"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def run_engine(rt: JobRuntime, sink: EventSink) -> JobOutcome:
    """The job, start to end, framed by ``job_start``/``job_end``: what the CLI, a deployment's
    flow run and the tests all run."""
    stream = _Stream(sink)
    stream.emit("job_start", job_id=rt.job_id, exec_user=rt.exec_user, pid=os.getpid(),
                start_time=proc_start_time(os.getpid()), width=rt.max_parallel,
                console=str(rt.jobdir.console_log), console_offset=_size(rt.jobdir.console_log),
                job_dir=str(rt.jobdir.root))
    outcome = JobOutcome(status=Status.FAILED)
    links = RunLinks(emit=stream.emit)
    try:
        outcome = run_job(rt, recorded_group_runner(stream, links), links)
    finally:
        stream.emit("job_end", status=outcome.status, exit_code=outcome.exit_code,
                    message=_end_message(outcome, stream),
                    groups={str(k): v for k, v in outcome.groups.items()})
    return outcome
