"""Dispatching the nodes of one phase, bounded, and aggregating their outcome.

The phase runner does not know about Prefect. A :data:`Dispatch` decides how a batch of nodes is
run: per node through a ``submit`` function returning a future (the flow layer's submit creates
one Prefect task run per node; tests use a thread pool), or — for phases too large for one task
run per node to pay off — as one unit of orchestration around a plain thread pool. Either way the
semantics (bounds, skips, halting, counting) live here, once.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, Protocol

from autoexec.engine.executor import NodeResult, NodeRun
from autoexec.models.nodes import Node
from autoexec.events.notify import PhaseCounts
from autoexec.job.runlinks import RunLinks
from autoexec.models.status import Status
from autoexec.job.runtime import JobRuntime, PhasePlan, PhaseState
from autoexec.jobdir.store import read_json
from autoexec.job.thresholds import FailGate, FailLimit, halt_line


_COUNTER = {Status.SUCCEED: "suc", Status.IGNORED: "ignore", Status.PAUSED: "pause", Status.ABORTED: "abort",
            Status.FAILED: "fail"}
"""A node's final status -> the phase's counter of it (any other status counts as failed)."""


class NodeFuture(Protocol):
    def result(self, timeout: float | None = None) -> Any: ...
    def add_done_callback(self, fn: Callable[[Any], None]) -> None: ...


Submit = Callable[[PhasePlan, Node], NodeFuture]
Dispatch = Callable[["PhaseRunner", list[Node]], None]


def execute_node(rt: JobRuntime, plan: PhasePlan, node: Node, links: RunLinks | None = None,
                 phase_counts: Callable[[], PhaseCounts] | None = None) -> NodeResult:
    """The unit of work behind one (phase, node) task run; ``phase_counts`` are its phase's live
    counters (a tool waiting for input pushes the phase's status with them)."""
    return NodeRun(rt, plan, node, links or RunLinks(), phase_counts).execute()


class PhaseRunner:
    def __init__(self, rt: JobRuntime, plan: PhasePlan, dispatch: Dispatch, links: RunLinks | None = None) -> None:
        self.rt = rt
        self.plan = plan
        self.dispatch = dispatch
        self.links = links or RunLinks()
        self.state = PhaseState(plan)
        self._unfinished = False
        """Some nodes were never handed out (the job halted, or this phase failed)."""

    def execute(self, nodes: Iterable[Node], scope: str = "") -> None:
        """Runs ``nodes`` (all of the phase, or one grayScale round: ``scope`` names it); their
        failures count against the phase's failure threshold afresh."""
        batch = list(nodes)
        limit = FailLimit.of(self.plan.phase, self.rt.params)
        self.rt.control.set_fail_gate(self.plan.name, FailGate(limit, len(batch), scope or f"phase {self.plan.name}"))
        self.dispatch(self, batch)

    # --- status -------------------------------------------------------------------------
    def _push(self, status: Status) -> None:
        self.state.status = status
        self.rt.notifier.phase_status(group_no=self.plan.group_no, phase=self.plan.name, status=status,
                                      counts=self.state.snapshot())

    def start(self) -> None:
        if not self.state.started:
            self.state.started = True
            self.rt.console.line(f"INFO: Begin to execute phase:{self.plan.name} operations...")
            self._push(Status.RUNNING)
            self.links.emit("phase_start", group=self.plan.group_no, phase=self.plan.name, nodes=len(self.plan.nodes))

    def finish(self) -> Status:
        """The phase's final status as the original aggregates it, except that a clean phase is not
        called ``paused`` merely because a concurrent phase failed. While the job aborts, a phase
        with failed or paused nodes is aborted."""
        c = self.state.counts
        ctl = self.rt.control
        status = Status.worst(s for s, key in _COUNTER.items() if c[key])
        if ctl.aborting and status in (Status.FAILED, Status.PAUSED):
            status = Status.ABORTED
        if status is Status.FAILED:
            ctl.note_failed()  # halting, if due, happened when the node failed (thresholds)
        elif status is Status.SUCCEED:
            if ctl.pausing and self.state.status == Status.RUNNING and self._unfinished:
                status = Status.PAUSED
            elif c["ignore"]:
                status = Status.COMPLETED
        self.rt.console.line(f"INFO: Execute phase:{self.plan.name} complete, status:{status}.")
        self._push(status)
        self.links.emit("phase_end", group=self.plan.group_no, phase=self.plan.name, status=status)
        return status

    def summary(self) -> None:
        c = self.state.counts
        self.rt.console.line(f"INFO: Execute phase:{self.plan.name} finish, suceessCount:{c['suc']}, "
                             f"failCount:{c['fail'] + c['abort']}, ignoreCount:{c['ignore']}, "
                             f"pauseCount:{c['pause']}, skipCount:{c['skip']}")

    # --- dispatch -----------------------------------------------------------------------
    def _halted(self) -> bool:
        """Read afresh each time (a method, so type narrowing does not assume it unchanged): node
        threads halt the job while this one hands out nodes."""
        return self.rt.control.halted

    def _should_skip(self, node: Node) -> tuple[str | None, str]:
        """(``skip`` | None, console line) from the node's recorded status. A node
        recorded ``running`` is not somebody else's to leave alone, as the original assumed when its
        pid was alive: the job's lock means no other run of this job is running here, so that pid is
        a dead runner's or a recycled one; the node executor clears what its op may have left."""
        data = read_json(self.rt.jobdir.node_paths(self.plan.name, node.triple).status)
        if data is None and self.rt.mirror is not None:
            data = self.rt.mirror.load_node_status(self.rt.job_id, self.plan.name, node.resourceId)
        status = (data or {}).get("status")
        if not self.rt.spec.force:
            if Status.of(status).done:
                return "skip", f"INFO: Node({node.resourceId}) status:{status} {node.label} had been executed, skip."
        verb = "try to execute again" if status == Status.RUNNING else "execute begin"
        return None, f"INFO: Node({node.resourceId}) status:{status or Status.PENDING} {node.label} {verb}..."

    # node status -> (console line level, console line end)
    _OUTCOMES = {Status.SUCCEED: ("INFO", "execute succeed."), Status.IGNORED: ("WARN", "execute failed, ignore."),
                 Status.PAUSED: ("WARN", "execute paused."), Status.ABORTED: ("ERROR", "execute aborted.")}

    def _account(self, node: Node, result: NodeResult | None, error: BaseException | None) -> None:
        status = result.status if result and result.status in self._OUTCOMES else Status.FAILED
        level, text = self._OUTCOMES.get(status) or ("ERROR", "execute failed{}.")
        key = _COUNTER[status]
        self.state.add(key, result.warn_count if result else 0)
        if key == "fail":
            self._failed(node)
            text = text.format(f": {error}" if error else (f": {result.message}" if result and result.message else ""))
        self.rt.console.line(f"{level}: Node({node.resourceId}) {node.label} {text}")

    def _failed(self, node: Node) -> None:
        why = self.rt.control.node_failed(self.plan.name, node.triple)
        if why:
            self.rt.console.line(halt_line(why))

    def run_nodes(self, nodes: Iterable[Node], submit: Submit) -> None:
        """Runs nodes with at most ``plan.parallel`` in flight; stops handing out new ones once the
        job halts or this phase has a failure. Nodes never handed out get no status (the
        original counted them as failed). A failed node halts the job unless the phase's failure
        threshold tolerates it."""
        slots = threading.Semaphore(self.plan.parallel)
        pending: list[tuple[Node, NodeFuture]] = []
        for node in nodes:
            if self._halted():
                self._unfinished = True
                break
            decision, line = self._should_skip(node)
            if decision is not None:
                self.rt.console.line(line)
                self.state.add("skip")
                self.links.emit("node_skip", group=self.plan.group_no, phase=self.plan.name, node=node.triple,
                                label=node.label)
                continue
            while not slots.acquire(timeout=0.2):
                if self._halted():
                    break
            else:
                if self._halted():  # the node whose end freed the slot may have halted the job
                    slots.release()
                    self._unfinished = True
                    break
                self.start()
                self.rt.console.line(line)
                future = submit(self.plan, node)
                future.add_done_callback(lambda _f: slots.release())
                pending.append((node, future))
                continue
            self._unfinished = True
            break
        for node, future in pending:
            try:
                result = future.result()
                self._account(node, result if isinstance(result, NodeResult) else None, None)
            except BaseException as exc:  # noqa: BLE001 - counted, never propagated
                self._account(node, None, exc)
