"""A node whose last run ended while one of its ops was running (the runner was killed, the
machine lost power): before anything runs again, what that op left running must be gone, or the
re-run would start the op beside its own survivor.

The status file says so: node ``running`` with ``currenOp`` still recorded ``running``. A runner
child has its pid there (``opPid``); it is killed with its process group when it still carries the
job's ``AUTOEXEC_JOBID`` entry (a recycled pid does not). A remote op is reaped on its host
through the node's transport (see ``transports/reap.py``). Either way the node log says what was
found; a host that cannot be checked fails the node instead of risking a second copy of the op.
"""
from __future__ import annotations

from typing import Any

from autoexec.jobdir.lock import kill_tree, process_alive, wait_gone
from autoexec.models.status import Status
from autoexec.ops.nodectx import NodeContext

WAIT_SECS = 10.0


def in_flight(status: dict[str, Any]) -> tuple[str, int | None] | None:
    """``(opId, opPid)`` of the op a previous run left running, from the node's status data."""
    if status.get("status") not in (Status.RUNNING, Status.WAIT_INPUT):
        return None
    op_id = status.get("currenOp")
    if not isinstance(op_id, str) or status.get(op_id) != Status.RUNNING:
        return None
    pid = status.get("opPid")
    return op_id, pid if isinstance(pid, int) and pid > 0 else None


def clear_in_flight(ctx: NodeContext, op_id: str, op_pid: int | None) -> str | None:
    """Kill and wait out the old op; a line for the node log first. Returns an error that fails
    the node, or ``None`` when nothing of the old op is left."""
    rt, node, log = ctx.rt, ctx.node, ctx.log
    if op_pid is not None:
        killed = _reap_local(rt.job_id, op_pid)
        log.line(f"{'WARN' if killed else 'INFO'}: Operation {op_id} was running when the previous run of "
                 f"this job ended; its runner process {op_pid} "
                 f"{'was still alive: killed with its process group' if killed else 'is gone'}.")
        return None
    if ctx.transport_spec is None:  # the runner, or a node no transport reaches
        return None
    try:
        transport = ctx.remote()
    except (ValueError, ImportError) as exc:
        return f"Operation {op_id} was running when the previous run ended and {node.host} cannot be checked: {exc}"
    reaped = transport.reap(rt.job_id, ctx.paths.key)
    if reaped.error:
        return f"{reaped.error}; operation {op_id} is not started again while it may still be running"
    if reaped.killed:
        log.line(f"WARN: Operation {op_id} of the previous run of this job was still running on {node.host}: "
                 f"killed {reaped.killed} process(es) and waited until they were gone.")
    elif not reaped.checked:
        log.line(f"WARN: Operation {op_id} was running when the previous run of this job ended; {node.host} "
                 f"offers no way to look for what is left of it (only the agent's own kill of a dropped "
                 f"connection's command applies).")
    else:
        log.line(f"INFO: Operation {op_id} was running when the previous run of this job ended; "
                 f"nothing of it is left on {node.host}.")
    return None


def _reap_local(job_id: str, pid: int) -> bool:
    """SIGKILL ``pid``'s group if ``pid`` still runs a tool of ``job_id``; wait until it is gone."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            environ = fh.read().split(b"\0")
    except OSError:
        return False
    if f"AUTOEXEC_JOBID={job_id}".encode() not in environ or not process_alive(pid):
        return False
    if not kill_tree(pid):
        return False
    wait_gone(pid, WAIT_SECS, interval=0.02)
    return True
