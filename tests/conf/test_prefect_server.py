"""autoexec.conf.prefect_server.lower_priority: the recorder and the embedded server yield the CPU to jobs."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from autoexec.conf.prefect_server import lower_priority

_CHILD = """
import os
from autoexec.conf.prefect_server import lower_priority
lower_priority(7)
print(os.getpriority(os.PRIO_PROCESS, 0))
try:
    print(open("/proc/self/autogroup").read().strip())
except OSError:
    print("no autogroup")
"""


def _expected(niceness: int) -> int:
    return min(19, os.getpriority(os.PRIO_PROCESS, 0) + niceness)


def _autogroup(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/autogroup") as fh:
            return fh.read().strip()
    except OSError:
        return None


def test_a_session_leader_lowers_its_own_priority_and_its_autogroup() -> None:
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True,
                          start_new_session=True, timeout=60)
    niceness, group = done.stdout.splitlines()
    assert int(niceness) == _expected(7)
    if group == "no autogroup":
        pytest.skip("this kernel schedules without autogroups")
    assert group.endswith("nice 7"), group


def test_a_process_in_someone_elses_session_leaves_that_group_alone() -> None:
    before = _autogroup(os.getpid())
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True, timeout=60)
    assert int(done.stdout.splitlines()[0]) == _expected(7)
    assert _autogroup(os.getpid()) == before


def test_a_started_server_process_is_lowered_by_its_parent() -> None:
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        lower_priority(5, child.pid)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == _expected(5)
        group = _autogroup(child.pid)
        if group is None:
            pytest.skip("this kernel schedules without autogroups")
        assert group.endswith("nice 5"), group
    finally:
        child.kill()
        child.wait()
