"""The reap script that clears what a crashed runner left of an op, run here against local
processes (it is plain sh over /proc, the same on a target host), and the status reading that
decides when it is needed."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from autoexec.ops.stale import in_flight
from autoexec.transports.reap import Reaped, parse_reap_output, reap_script
from tests.fixtures_core import process_running
from tests.waiting import wait_until


def _start(job: str, key: str, tmp: Path, name: str) -> subprocess.Popen[bytes]:
    """A shell (like the op's login shell) with a tool and a background child, all marked."""
    env = dict(os.environ, AUTOEXEC_JOBID=job, AUTOEXEC_NODE_KEY=key)
    ready = tmp / f"{name}.ready"
    proc = subprocess.Popen(["sh", "-c", f'sleep 300 & echo $! > "{tmp}/{name}.child"; touch "{ready}"; sleep 300'],
                            env=env, start_new_session=True)
    wait_until(ready.exists, 60, f"{name} to start its child", interval=0.01, required=False)
    return proc


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    started = {
        "target": _start("77", "deploy/h-22-1", tmp_path, "target"),
        "other_node": _start("77", "deploy/h-22-2", tmp_path, "other_node"),
        "other_job": _start("770", "deploy/h-22-1", tmp_path, "other_job"),
    }
    yield started
    for proc in started.values():
        try:
            os.killpg(proc.pid, 9)
        except OSError:
            pass
        proc.wait(5)


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_reap_kills_that_job_and_node_only_and_waits(procs: dict[str, subprocess.Popen[bytes]], tmp_path: Path,
                                                     shell: str) -> None:
    child = int((tmp_path / "target.child").read_text())
    done = subprocess.run([shell, "-c", reap_script("77", "deploy/h-22-1")], capture_output=True, text=True,
                          timeout=60)
    result = parse_reap_output(done.stdout, done.returncode, "here")
    assert result == Reaped(killed=3), done.stdout + done.stderr  # the shell, its tool, the background child
    assert procs["target"].wait(5) == -9
    assert not process_running(child)
    assert procs["other_node"].poll() is None and procs["other_job"].poll() is None
    again = subprocess.run(["sh", "-c", reap_script("77", "deploy/h-22-1")], capture_output=True, text=True, timeout=60)
    assert parse_reap_output(again.stdout, again.returncode, "here") == Reaped(killed=0)


def test_reap_output_that_is_not_the_scripts_is_an_error() -> None:
    assert parse_reap_output("autoexec-reap: reaped 2 left 41 42\n", 0, "h").error == \
        "h: processes of the previous run still alive after SIGKILL: 41 42"
    noisy = "Welcome!\nautoexec-reap: reaped 1 left \nlogout: bye\n"  # profile and .bash_logout noise
    assert parse_reap_output(noisy, 0, "h") == Reaped(killed=1)
    bad = parse_reap_output("sh: 1: grep: not found\n", 127, "ssh u@h:22")
    assert bad.error == "ssh u@h:22: checking for processes of the previous run failed (status 127): sh: 1: grep: not found"


def test_an_op_is_in_flight_only_while_its_node_and_op_say_running() -> None:
    assert in_flight({"status": "running", "currenOp": "a_1", "a_1": "running", "opPid": None}) == ("a_1", None)
    assert in_flight({"status": "running", "currenOp": "a_1", "a_1": "running", "opPid": 4242}) == ("a_1", 4242)
    assert in_flight({"status": "running", "currenOp": "a_1", "a_1": "succeed"}) is None  # between two ops
    assert in_flight({"status": "aborted", "currenOp": "a_1", "a_1": "running"}) is None
    assert in_flight({}) is None


def test_the_job_wide_kill_is_the_same_script_and_hits_only_its_job(tmp_path: Path) -> None:
    """``kill_job_script`` kills every process carrying exactly ``AUTOEXEC_JOBID=<job>`` (not job
    7712 for job 771), and reports nothing left."""
    from autoexec.transports.reap import kill_job_script, survivors

    env = dict(os.environ)
    ours = subprocess.Popen(["sleep", "300"], env={**env, "AUTOEXEC_JOBID": "771"})
    other = subprocess.Popen(["sleep", "300"], env={**env, "AUTOEXEC_JOBID": "7712"})
    try:
        done = subprocess.run(["sh", "-c", kill_job_script("771")], capture_output=True, text=True, timeout=60)
        assert survivors(done.stdout) == "", done.stdout + done.stderr
        assert ours.wait(timeout=30) == -9
        assert other.poll() is None
    finally:
        for proc in (ours, other):
            proc.kill()
            proc.wait()
