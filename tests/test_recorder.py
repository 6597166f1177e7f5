"""autoexec.flows.recorder: the recorder yields the CPU to the job it records."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

_CHILD = """
import os, sys
from autoexec.flows.recorder import lower_priority
lower_priority(7)
print(os.getpriority(os.PRIO_PROCESS, 0))
try:
    print(open("/proc/self/autogroup").read().strip())
except OSError:
    print("no autogroup")
"""


def test_a_session_leader_lowers_its_own_priority_and_its_autogroup() -> None:
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True,
                          start_new_session=True, timeout=60)
    niceness, group = done.stdout.splitlines()
    assert int(niceness) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 7)
    if group == "no autogroup":
        pytest.skip("this kernel schedules without autogroups")
    assert group.endswith("nice 7"), group


def test_a_process_in_someone_elses_session_leaves_that_group_alone() -> None:
    before = open("/proc/self/autogroup").read().strip() if os.path.exists("/proc/self/autogroup") else None
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True, timeout=60)
    assert int(done.stdout.splitlines()[0]) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 7)
    if before is not None:
        assert open("/proc/self/autogroup").read().strip() == before
