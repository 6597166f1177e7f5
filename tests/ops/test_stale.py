"""The stale-op reaper's runner-side path: a tool a dead run left behind is killed with what it
started, and a process that is not the job's (a recycled pid) is left alone."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from autoexec.jobdir.lock import process_alive, wait_gone
from autoexec.ops.stale import _reap_local
from tests.waiting import wait_until


def _live_members(group: int) -> list[str]:
    """Processes of ``group`` that are not zombies (a killed child waits a moment for its reaper)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[2] == str(group) and fields[0] != "Z":
            found.append(stat.parent.name)
    return found


def _tool(job_id: str) -> subprocess.Popen[bytes]:
    # a group leader whose child would outlive a plain kill of the leader
    proc = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], env={**os.environ, "AUTOEXEC_JOBID": job_id},
                            start_new_session=True)
    marker = f"AUTOEXEC_JOBID={job_id}".encode()
    wait_until(lambda: marker in Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0"), 30, "the tool started")
    return proc


def test_a_left_tool_is_killed_with_its_process_group() -> None:
    tool = _tool("4711")
    try:
        assert _reap_local("4711", tool.pid) is True
        assert tool.wait(10) == -9
        assert wait_gone(tool.pid, 10)
        wait_until(lambda: not _live_members(tool.pid), 10, "the tool's child gone")
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
