"""The job loop: groups strictly in order, stop on failure or stop request,
fire-next at the end. The caller (:mod:`autoexec.engine.run`) supplies how a group is run."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from autoexec.engine.groups import GroupResult
from autoexec.models.params import Group
from autoexec.job.runlinks import RunLinks
from autoexec.models.status import Status
from autoexec.job.runtime import JobRuntime

GroupRunner = Callable[[JobRuntime, Group], GroupResult]
"""Runs one group; it shares the run's :class:`RunLinks` with the job socket (the caller made both)."""


@dataclass
class JobOutcome:
    status: Status
    """``succeed``, ``failed``, ``paused`` or ``aborted``."""
    groups: dict[int, dict[str, Status]] = field(default_factory=dict)
    message: str = ""
    """Why the job stopped early (a failure threshold, a failed node), for records and operators."""

    @property
    def exit_code(self) -> int:
        """The original's exit code: 1 on a global failure (an abort counts), 0 otherwise (paused included)."""
        return 1 if self.status.failed else 0

    def summary(self) -> dict[str, Any]:
        return {"status": self.status, "exitCode": self.exit_code, "message": self.message,
                "groups": {str(k): v for k, v in self.groups.items()}}




def run_job(rt: JobRuntime, run_one_group: GroupRunner, links: RunLinks) -> JobOutcome:
    from autoexec.engine.jobsock import JobSocket

    sock = JobSocket(rt, links)
    started = True
    try:
        sock.start()
    except OSError as exc:
        rt.console.line(f"WARN: Job socket not available ({exc}); tools cannot talk to the runner.")
        started = False
    try:
        return _run_groups(rt, run_one_group)
    finally:
        if started:
            sock.stop()


def _run_groups(rt: JobRuntime, run_one_group: GroupRunner) -> JobOutcome:
    ctl = rt.control
    rt.console.line(f"INFO: JobId:{rt.job_id} start...")
    last_group: int | None = None
    ran_any = False
    outcome = JobOutcome(status=Status.SUCCEED)
    for group in rt.params.runFlow:
        if ctl.halted:
            break
        if rt.spec.group_filter is not None and group.groupNo not in rt.spec.group_filter:
            continue
        last_group = group.groupNo
        load_job_env(rt)
        result = run_one_group(rt, group)
        outcome.groups[group.groupNo] = result.phases
        ran_any = ran_any or result.ran_any
        if result.failed:
            ctl.note_failed()  # failures within a threshold go on to the next group
    if ctl.aborting:
        outcome.status = Status.ABORTED
        rt.notifier.job_status(status=Status.ABORTED)
        rt.console.line("INFO: Job killed.")
    elif ctl.failed:
        outcome.status = Status.FAILED
        outcome.message = ctl.halt_reason or "node(s) failed within the failure threshold"
    elif ctl.pausing:
        outcome.status = Status.PAUSED
        rt.notifier.job_status(status=Status.PAUSED)
        rt.console.line("INFO: Job paused.")
    elif ran_any and last_group is not None and not rt.spec.no_fire_next:
        rt.notifier.fire_next_group(group_no=last_group)
    rt.console.line(f"INFO: Job {rt.job_id} finished, status:{outcome.status}.")
    return outcome


def load_job_env(rt: JobRuntime) -> None:
    """Job-global variables set by ``native/setenv`` scope ``global`` in earlier phases, invocations
    or on other runners (MongoDB ``_autoexec_env``) — re-read at each group start."""
    loader = getattr(rt.mirror, "load_env", None)
    if loader is not None:
        rt.env.reload(loader(rt.job_id))
