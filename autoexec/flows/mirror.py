"""A CLI job's record in Prefect, replayed from its event spool by the recorder process.

Same shape as the in-process flow of :mod:`autoexec.flows.job_flow` (flow ``autoexec-job`` run
``job-<id>`` -> subflow ``autoexec-group`` run ``<id>/group-<n>`` -> task runs ``<phase>/<node>``
or, for phases above ``AUTOEXEC_NODE_TASKS_MAX`` nodes, one ``<phase>/<first>..+<n>`` batch), the
same final states, node log tails in the task run logs, and the same Cancel/Pause handling: the
watcher's requests become the job process's own signals (SIGTERM aborts, SIGUSR1 pauses, §12.2).

A task run opens when its node starts and closes when the node ends; while the recorder is still
starting (importing Prefect, ~1 s) the first runs open late and close at once.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Cancelled, Completed, Crashed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from autoexec.flows.feed import Feed, process_alive
from autoexec.flows.prefect_control import RunWatcher
from autoexec.flows.run_logs import forward_node_log

_feeds: dict[str, Feed] = {}


class SignalControl:
    """What :class:`RunWatcher` drives, for a job that runs in another process."""

    def __init__(self, pid: int, alive: Any) -> None:
        self.pid = pid
        self._alive = alive
        self.aborting = False
        self.pausing = False

    @property
    def stopping(self) -> bool:
        return self.aborting or self.pausing

    def _signal(self, sig: int) -> None:
        if self._alive():
            try:
                os.kill(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def abort(self) -> None:
        if not self.aborting:
            self.aborting = True
            self._signal(signal.SIGTERM)

    def pause(self) -> None:
        if not self.stopping:
            self.pausing = True
            self._signal(signal.SIGUSR1)


@task(name="node", task_run_name="{phase}/{node}", cache_policy=NO_CACHE, persist_result=False, retries=0)
def node_record(job_id: str, phase: str, node: str, key: int) -> Any:
    event = _feeds[job_id].outcome(key)
    status = str(event.get("status"))
    summary = event.get("summary") or {}
    if event.get("log"):
        try:
            forward_node_log(get_run_logger(), f"{phase}/{node}", Path(event["log"]), status)
        except Exception:  # noqa: BLE001 - the UI copy of a log must never fail the record
            pass
    if status in ("failed", "aborted"):
        return Failed(message=f"{phase}/{node} {status}: {summary.get('message', '')}"[:500], data=summary)
    return summary


@task(name="node-batch", task_run_name="{phase}/{label}", cache_policy=NO_CACHE, persist_result=False, retries=0)
def batch_record(job_id: str, phase: str, label: str, key: int) -> Any:
    event = _feeds[job_id].outcome(key)
    summary = event.get("summary") or {}
    if event.get("status") == "failed":
        return Failed(message=f"{phase}: {summary.get('failed', '?')} of {summary.get('nodes', '?')} node(s) failed",
                      data=summary)
    return summary


@flow(name="autoexec-group", flow_run_name="{job_id}/group-{group_no}", validate_parameters=False, retries=0)
def group_record(job_id: str, group_no: int) -> Any:
    feed = _feeds[job_id]
    futures = []
    while True:
        event = feed.next()
        kind = event.get("e")
        if kind == "node_start":
            futures.append(node_record.submit(job_id, event["phase"], event["node"], event["k"]))
        elif kind == "batch_start":
            futures.append(batch_record.submit(job_id, event["phase"], event["label"], event["k"]))
        elif kind == "group_end":
            for future in futures:
                future.wait()
            phases = event.get("phases") or {}
            if event.get("failed"):
                return Failed(message=f"group {group_no}: " + ", ".join(f"{k}={v}" for k, v in phases.items()),
                              data=phases)
            return phases


@flow(name="autoexec-job", flow_run_name="job-{job_id}", validate_parameters=False, retries=0)
def job_record(job_id: str, exec_user: str = "anonymous") -> Any:
    feed = _feeds[job_id]
    watcher = _watch(feed)
    try:
        while True:
            event = feed.next()
            kind = event.get("e")
            if kind == "group_start":
                width = max(1, int((feed.job or {}).get("width") or 64))
                group_record.with_options(task_runner=ThreadPoolTaskRunner(max_workers=width))(  # type: ignore[arg-type]  # Prefect's TaskRunner type is invariant
                    job_id, event["group"], return_state=True)
            elif kind == "job_end":
                return final_state(event)
    finally:
        if watcher is not None:
            watcher.stop()


def final_state(event: dict[str, Any]) -> Any:
    """The job flow's final state, as :func:`autoexec.flows.job_flow.outcome_state` would give."""
    import json

    status = event.get("status")
    summary = event.get("summary") or {}
    if status == "crashed":
        return Crashed(message=f"job process lost: {summary.get('message', '')}")
    if status == "failed":
        return Failed(message=f"job failed: {summary['message']}" if summary.get("message") else "job failed",
                      data=json.dumps(summary))
    if status == "aborted":
        return Cancelled(message="job aborted", data=json.dumps(summary))
    return Completed(message=f"job {status}", data=summary)


def _watch(feed: Feed) -> RunWatcher | None:
    from prefect.context import get_run_context

    if os.environ.get("AUTOEXEC_PREFECT_WATCH", "1") == "0" or feed.job is None:
        return None
    job = feed.job
    pid, start = int(job.get("pid") or 0), job.get("startTime")
    control = SignalControl(pid, lambda: not feed.ended and process_alive(pid, start))
    try:
        flow_run = get_run_context().flow_run  # type: ignore[union-attr]
        watcher = RunWatcher(control, str(flow_run.id),  # type: ignore[arg-type, union-attr]
                             interval=float(os.environ.get("AUTOEXEC_PREFECT_WATCH_SECONDS", "1")))
    except Exception:  # noqa: BLE001 - no watcher: signals and --abort still work
        return None
    return watcher.start()


def record(feed: Feed) -> Any:
    """Replays the whole spool as one flow run; returns its final state."""
    job = feed.job or {}
    job_id = str(job.get("jobId"))
    _feeds[job_id] = feed
    try:
        return job_record.with_options(flow_run_name=f"job-{job_id}")(
            job_id=job_id, exec_user=str(job.get("execUser") or "anonymous"), return_state=True)
    finally:
        _feeds.pop(job_id, None)
