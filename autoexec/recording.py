"""A CLI job runs on plain thread pools and hands its Prefect record to a sidecar process.

Why: importing Prefect and creating a flow run costs a fixed ~1.6 s of one core per job, and every
task run ~5 ms of client CPU under the GIL (``shared/spec/prefect-lab.md`` §2) — more than a
1000-node job of the original takes in all. So the job process never imports Prefect: it appends
one JSON line per state change (job, group, node or node batch started/ended) to a spool file,
and a recorder process (:mod:`autoexec.flows.recorder`, started at once, detached) replays them as
the job's flow run, group subflows and ``<phase>/<node>`` task runs, and turns Cancel/Pause from
the Prefect UI into the job's own signals. The per-node status files stay the source of truth;
the spool is only the record's feed and is removed once replayed.

Deployment runs (a worker already runs Prefect) keep the in-process flow of
:mod:`autoexec.flows.job_flow`; ``AUTOEXEC_PREFECT_MODE=inline`` makes the CLI use it too.
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from autoexec.engine import GroupRunner, JobOutcome, run_job
from autoexec.executor import NodeResult
from autoexec.groups import GroupResult, run_group
from autoexec.joblock import proc_start_time
from autoexec.models.nodes import Node
from autoexec.models.params import Group
from autoexec.phase import Dispatch, PhaseRunner, execute_node
from autoexec.runtime import JobRuntime, PhasePlan


def node_tasks_max() -> int:
    """Phases with more nodes are recorded as one batch task run (see README, Performance)."""
    return int(os.environ.get("AUTOEXEC_NODE_TASKS_MAX", "256"))


def spool_dir(home: Path) -> Path:
    return home / "prefect" / "spool"


class EventSpool:
    """Append-only JSON lines, one ``os.write`` each on an ``O_APPEND`` descriptor: atomic per
    line for concurrent threads, never blocking on the reader, and still readable after a crash."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._keys = itertools.count(1)

    def emit(self, event: str, **fields: Any) -> None:
        fields["e"] = event
        fields["t"] = time.time()
        try:
            os.write(self._fd, (json.dumps(fields, separators=(",", ":"), default=str) + "\n").encode())
        except (OSError, ValueError):
            pass  # a full disk or a closed spool loses Prefect's copy only, never the job

    def next_key(self) -> int:
        return next(self._keys)

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass


class _RecordedSubmit:
    """Per-node submit on the group's pool, framed by ``node_start``/``node_end`` events."""

    def __init__(self, rt: JobRuntime, spool: EventSpool, pool: ThreadPoolExecutor) -> None:
        self.rt, self.spool, self.pool = rt, spool, pool

    def __call__(self, plan: PhasePlan, node: Node) -> Future:
        key = self.spool.next_key()
        self.spool.emit("node_start", k=key, phase=plan.name, node=node.triple)
        return self.pool.submit(self._run, key, plan, node)

    def _run(self, key: int, plan: PhasePlan, node: Node) -> NodeResult:
        result = NodeResult(node=node.triple, status="failed", message="node raised")
        try:
            result = execute_node(self.rt, plan, node)
        finally:
            self.spool.emit("node_end", k=key, status=result.status, summary=result.summary(),
                            log=self.rt.jobdir.node_paths(plan.name, node.triple).log)
        return result


def _recorded_dispatch(rt: JobRuntime, spool: EventSpool, pool: ThreadPoolExecutor) -> Dispatch:
    submit = _RecordedSubmit(rt, spool, pool)

    def plain_submit(plan: PhasePlan, node: Node) -> Future:
        return pool.submit(execute_node, rt, plan, node)

    def dispatch(runner: PhaseRunner, nodes: list[Node]) -> None:
        if len(nodes) <= node_tasks_max():
            runner.run_nodes(nodes, submit)
            return
        key = spool.next_key()
        spool.emit("batch_start", k=key, phase=runner.plan.name, label=f"{nodes[0].triple}..+{len(nodes) - 1}")
        before = runner.state.snapshot()
        try:
            runner.run_nodes(nodes, plain_submit)
        finally:
            after = runner.state.snapshot()
            summary = {"nodes": len(nodes), "succeed": after.suc - before.suc, "failed": after.fail - before.fail,
                       "ignored": after.ignore - before.ignore, "skipped": after.skip - before.skip,
                       "paused": after.pause - before.pause}
            spool.emit("batch_end", k=key, status="failed" if summary["failed"] else "succeed", summary=summary)

    return dispatch


def recorded_group_runner(spool: EventSpool) -> GroupRunner:
    def run(rt: JobRuntime, group: Group) -> GroupResult:
        spool.emit("group_start", group=group.groupNo)
        result = GroupResult(group.groupNo, {"?": "failed"})
        try:
            with ThreadPoolExecutor(max(1, rt.max_parallel), thread_name_prefix=f"g{group.groupNo}") as pool:
                result = run_group(rt, group, _recorded_dispatch(rt, spool, pool))
        finally:
            spool.emit("group_end", group=group.groupNo, failed=result.failed, phases=result.phases)
        return result
    return run


class Recorder:
    """The job's side of the record: the spool, and the detached recorder process replaying it."""

    def __init__(self, rt: JobRuntime, home: Path, verbose: bool = False) -> None:
        self.rt = rt
        name = f"{rt.job_id.replace('/', '_')}-{os.getpid()}-{int(time.time() * 1000)}.jsonl"
        self.spool = EventSpool(spool_dir(home) / name)
        self.spool.emit("job_start", jobId=rt.job_id, execUser=rt.exec_user, pid=os.getpid(),
                        startTime=proc_start_time(os.getpid()), width=rt.max_parallel,
                        console=str(rt.jobdir.console_log))
        self.process = self._spawn(home, verbose)

    def _spawn(self, home: Path, verbose: bool) -> subprocess.Popen[bytes] | None:
        log_dir = home / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.pop("AUTOEXEC_NODE_PASSWORD", None)
        if verbose:
            env["AUTOEXEC_RECORDER_VERBOSE"] = "1"
        try:
            with open(log_dir / "prefect-recorder.log", "ab") as log:
                return subprocess.Popen([sys.executable, "-m", "autoexec.flows.recorder", str(self.spool.path)],
                                        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True, close_fds=True)
        except OSError as exc:
            self.rt.console.line(f"WARN: Prefect recorder not started ({exc}); this run has no Prefect record.")
            return None

    def run(self) -> JobOutcome:
        rt = self.rt
        rt.control.install_signal_handlers()
        outcome = JobOutcome(status="failed")
        try:
            outcome = run_job(rt, recorded_group_runner(self.spool))
        finally:
            self.spool.emit("job_end", status=outcome.status, message=outcome.message, summary=outcome.summary())
            self.spool.close()
        return outcome

    def wait(self, timeout: float) -> bool:
        """``AUTOEXEC_PREFECT_WAIT``: callers that read the Prefect record right after the job."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
