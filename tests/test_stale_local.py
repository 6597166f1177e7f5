"""The stale-op reaper's runner-side path: a tool a dead run left behind is killed with what it
started, and a process that is not the job's (a recycled pid) is left alone."""
from __future__ import annotations

import os
import subprocess

from autoexec.jobdir.lock import process_alive, wait_gone
from autoexec.ops.stale import _reap_local


def _tool(job_id: str) -> subprocess.Popen[bytes]:
    # a group leader whose child would outlive a plain kill of the leader
    return subprocess.Popen(["sh", "-c", "sleep 60 & wait"], env={**os.environ, "AUTOEXEC_JOBID": job_id},
                            start_new_session=True)


def test_a_left_tool_is_killed_with_its_process_group() -> None:
    tool = _tool("4711")
    try:
        assert _reap_local("4711", tool.pid) is True
        assert tool.wait(10) == -9
        assert wait_gone(tool.pid, 10)
        survivors = subprocess.run(["pgrep", "-g", str(tool.pid)], capture_output=True, text=True).stdout.split()
        assert survivors == []
    finally:
        if tool.poll() is None:
            tool.kill()


def test_a_process_of_another_job_is_not_touched() -> None:
    other = _tool("47111")  # a longer id: an exact entry, not a prefix
    try:
        assert _reap_local("4711", other.pid) is False
        assert process_alive(other.pid)
    finally:
        os.killpg(other.pid, 9)
        other.wait(10)
