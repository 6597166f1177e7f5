"""Runs the operations of one phase on one node and records what happened.

The executor owns the node's log, status file and outputs for the duration of the run; where an
op runs (runner child process, SSH, Tagent, inside the runner for native ops) is decided by
:mod:`autoexec.ops.dispatch`.
"""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from autoexec.jobdir.logs import NodeLog
from autoexec.models.nodes import Node
from autoexec.models.params import Operation
from autoexec.models.status import Status
from autoexec.events.notify import NodeRef, PhaseCounts
from autoexec.ops.dispatch import run_operation
from autoexec.ops.outcome import OpOutcome
from autoexec.ops.nodectx import NodeContext
from autoexec.ops.stale import clear_in_flight, in_flight
from autoexec.job.runlinks import RunLinks
from autoexec.job.runtime import JobRuntime, PhasePlan
from autoexec.jobdir.store import NodeOutput, NodeStatus, read_json
from autoexec.job.thresholds import halt_line


@dataclass
class NodeResult:
    """What a phase task returns; also the Prefect task result (no secrets, small)."""

    node: str
    status: Status
    duration: float = 0.0
    exit_code: int | None = None
    warn_count: int = 0
    outputs: list[str] = field(default_factory=list)
    message: str = ""
    failure_kind: str | None = None
    """Why a remote op failed, by kind (``transports.base.FailureKind`` value), when it did."""

    def summary(self) -> dict[str, Any]:
        return {"node": self.node, "status": self.status, "exitCode": self.exit_code,
                "duration": round(self.duration, 3), "warnCount": self.warn_count,
                "outputs": self.outputs, "message": self.message,
                **({"failureKind": self.failure_kind} if self.failure_kind else {})}


class NodeRun:
    def __init__(self, rt: JobRuntime, plan: PhasePlan, node: Node, links: RunLinks | None = None,
                 phase_counts: Callable[[], PhaseCounts] | None = None) -> None:
        self.rt = rt
        self.plan = plan
        self.node = node
        self.links = links or RunLinks()
        self.phase_counts = phase_counts
        self.triple = node.triple
        self.is_runner = node.resourceId == 0
        self.paths = rt.jobdir.node_paths(plan.name, self.triple)
        self.status = NodeStatus(self.paths.status, rt.job_id, plan.name, node, rt.mirror)
        if self.is_runner and rt.runner_output is not None:
            self.output = rt.runner_output
        else:
            self.output = NodeOutput(self.paths.output, rt.job_id, node, rt.mirror)
        self.log: NodeLog | None = None
        self.ref = NodeRef(node.resourceId, node.host, "" if node.port is None else node.port)
        self.ctx: NodeContext | None = None

    # --- status --------------------------------------------------------------------------
    def set_status(self, status: Status, fail_ignore: bool = False) -> None:
        status = status.while_aborting(self.rt.control.aborting)
        warn = self.log.warn_count if self.log else self.status.data.get("warnCount", 0)
        if self.status.set_status(status, warn):
            self._announce(status, fail_ignore, warn)
        if status.failed:
            self._node_failed()

    def _node_failed(self) -> None:
        """Counts against the phase's failure threshold; passing it halts the job (logged once)."""
        why = self.rt.control.node_failed(self.plan.name, self.triple)
        if why:
            self.rt.console.line(halt_line(why))

    def _announce(self, status: str, fail_ignore: bool, warn: int) -> None:
        """A changed node status: one line in the node log, one callback."""
        if self.log:
            self.log.line(f"INFO: Change node status to {status}.")
        self.rt.notifier.node_status(group_no=self.plan.group_no, phase=self.plan.name, node=self.ref,
                                     status=status, fail_ignore=fail_ignore, warn_count=warn)

    def wait_input(self, interact: dict[str, Any] | None) -> None:
        """``informNodeWaitInput`` from the node's tool over the job socket: ``waitInput`` with the question the
        console shows, or back to ``running`` (``interact`` None) once answered."""
        status = Status.WAIT_INPUT if interact is not None else Status.RUNNING
        if self.status.set_interact(status, interact):
            self._announce(status, False, int(self.status.data.get("warnCount") or 0))
        counts = self.phase_counts
        # the original pushed phase ``waitInput`` on the answer too; the phase runs again
        self.rt.notifier.phase_status(group_no=self.plan.group_no, phase=self.plan.name, status=status,
                                      counts=counts() if counts else PhaseCounts())

    # --- main sequence -------------------------------------------------------------------
    def execute(self) -> NodeResult:
        rt, node = self.rt, self.node
        started = time.monotonic()
        result = NodeResult(node=self.triple, status=Status.FAILED)
        self.log = NodeLog(self.paths.log, self.paths.hislog_dir, rt.exec_user, mask=rt.masker)
        launched = f"{node.protocol}://{node.username}@{node.host}:{node.protocolPort}"
        self.log.line(f"======[{node.resourceId}]{node.label} Launched by {launched}======")
        final = Status.FAILED
        self.links.running.enter(self.plan.name, node.resourceId, self)
        left_running = in_flight(self.status.data)  # before "running" is written again
        # The node's own lines between the waits go out together; every wait (an op's run, a retry
        # delay, closing a connection) is unbatched, so what was logged before it is visible.
        with self.log.batch():
            try:
                self.set_status(Status.RUNNING)
                self.ctx = NodeContext(rt, self.plan, node, self.status, self.output, self.log, self.paths)
                blocked = clear_in_flight(self.ctx, *left_running) if left_running else None
                if blocked:
                    self.log.line(f"ERROR: {blocked}")
                    final, result.message = Status.FAILED, blocked
                else:
                    final, last = self._run_ops(self.plan.phase.operations)
                    result.exit_code = last.exit_code if last else None
                    result.message = last.message if last and final is not Status.SUCCEED else ""
                    result.failure_kind = last.failure_kind if last and final is not Status.SUCCEED else None
            except Exception as exc:  # noqa: BLE001 - a node never takes the phase down with it
                self.log.line(f"ERROR: Some error occurred: {exc}")
                self.log.write(traceback.format_exc())
                final = Status.FAILED
                result.message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            finally:
                self.links.running.leave(self.plan.name, node.resourceId)
                if self.ctx is not None:
                    if self.ctx.transport is not None:
                        with self.log.unbatched():  # closing a connection may take a while
                            self.ctx.close()
                    else:
                        self.ctx.close()
            self.set_status(final, fail_ignore=final is Status.IGNORED)
            final = Status.of(self.status.status, final)
            duration = time.monotonic() - started
            self.log.line(f"{final.hint} Node execute complete, status:{final}.")
            self.log.line(f"======[{node.resourceId}]{node.label} executed by {launched} ended, "
                          f"duration:{duration:.2f} second ======")
        result.warn_count = self.log.warn_count
        self.status.close()
        self.log.finish(final)
        result.status = final
        result.message = rt.masker(result.message)  # goes to Prefect states and the event spool
        result.duration = duration
        result.outputs = sorted(k for k in self.output.data if k not in ("nodeEnv", "hiddenNodeEnv"))
        return result

    def _run_ops(self, ops: list[Operation]) -> tuple[Status, OpOutcome | None]:
        assert self.ctx is not None and self.log is not None
        ignored = False
        last: OpOutcome | None = None
        for op in ops:
            if self.rt.control.stopping:
                if self.rt.control.aborting:
                    return Status.ABORTED, last
                self.log.line("INFO: Node running paused.")
                return Status.PAUSED, last
            if op.is_if_block:
                branch = self._eval_if(op)
                if branch is None:
                    return Status.FAILED, last
                status, last = self._run_ops(branch)
                if status.failed or status is Status.PAUSED:
                    return status, last
                ignored = ignored or status is Status.IGNORED
                continue
            last = self._run_one(op)
            if last.final is Status.PAUSED:
                self.log.line("INFO: Node running paused.")
                return Status.PAUSED, last
            if last.final.failed:
                return last.final.while_aborting(self.rt.control.aborting), last
            if last.final is Status.IGNORED:
                ignored = True
        return (Status.IGNORED if ignored else Status.SUCCEED), last

    def _eval_if(self, op: Operation) -> list[Operation] | None:
        assert self.ctx is not None and self.log is not None
        from autoexec.ops.condition import ConditionError, evaluate

        try:
            value = evaluate(op.condition or "", self.ctx.lookup_variable)
        except ConditionError as exc:
            self.log.line(f"ERROR: {exc}")
            return None
        self.log.line(f"INFO: IF condition [ {op.condition} ] = {value}")
        return list((op.if_ops if value else op.else_ops) or [])

    def _run_one(self, op: Operation) -> OpOutcome:
        assert self.ctx is not None and self.log is not None
        rt, log = self.rt, self.log
        if self.status.op_status(op.opId) == Status.SUCCEED and not rt.spec.force:
            previous = read_json(self.paths.op_output(op.opId))
            if isinstance(previous, dict):
                self.output.update({op.opId: previous})
            log.line(f"INFO: Operation {op.opId} has been executed in status:succeed, skip.")
            return OpOutcome(final=Status.SUCCEED, skipped=True)
        attempts = 1 + op.retries
        attempt, stopped = 1, False
        while True:
            outcome = self._attempt(op, attempt, attempts)
            if outcome.final is not Status.FAILED or attempt >= attempts:
                break
            why = f": {outcome.message}" if outcome.message else ""
            log.line(f"WARN: Operation {op.opId} attempt {attempt}/{attempts} failed{why}; "
                     f"retry in {op.retryDelay:g} second(s).")
            with log.unbatched():
                stopped = rt.control.stopping or rt.control.wait_stop(op.retryDelay)
            if stopped:
                break
            attempt += 1
        if stopped:  # the job stopped while a retry was pending: the op neither failed nor ran out
            outcome.final = Status.ABORTED if rt.control.aborting else Status.PAUSED
            log.line(f"INFO: Operation {op.opId} retry cancelled, job {outcome.final}.")
        elif outcome.final is Status.FAILED and op.fail_ignore:
            outcome.final = Status.IGNORED
        self.ctx.prev_op_status = Status.PENDING if outcome.skipped else outcome.final
        if not outcome.skipped:
            self.status.set_op(op.opId, Status.SUCCEED if outcome.final is Status.SUCCEED else Status.FAILED)
            if outcome.final.failed:
                self._node_failed()
                try:
                    os.unlink(self.paths.op_output(op.opId))
                except FileNotFoundError:
                    pass
                if op.opId in self.output.data:
                    self.output.update({}, removed=(op.opId,))
        return outcome

    def _attempt(self, op: Operation, attempt: int, attempts: int) -> OpOutcome:
        """One run of ``op``, framed by its START/END lines in the node log."""
        assert self.ctx is not None and self.log is not None
        rt, log = self.rt, self.log
        kind = op.kind
        if attempts > 1:
            log.line(f"INFO: Operation {op.opId} attempt {attempt}/{attempts}.")
        log.lines((f"------START--[{op.opId}] {kind} execution start...", f"------{op.help or ''}---"))
        started = time.monotonic()
        with log.unbatched():  # what the node logged so far is visible before the op runs
            try:
                outcome = run_operation(self.ctx, op)
            except Exception as exc:  # noqa: BLE001 - a broken op fails this op (logged with its traceback), not the node thread
                log.line(f"ERROR: Error ocurred. {exc}")
                log.write(traceback.format_exc())
                outcome = OpOutcome(final=Status.FAILED, message=str(exc))
        outcome.final = outcome.final.while_aborting(rt.control.aborting)
        last_try = attempt >= attempts
        final = Status.IGNORED if outcome.final is Status.FAILED and op.fail_ignore and last_try else outcome.final
        where = kind.where
        log.lines((f"{final.hint} Execute operation {op.opName} {where} {final}.".replace("  ", " "),
                   f"------END--[{op.opId}] {kind} execution complete -- duration: {time.monotonic() - started:.2f} second."))
        return outcome

