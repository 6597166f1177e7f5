"""One run per job, and control from the first moment: real ``autoexec`` processes, a real console
on loopback. Where a test starts many runs, the runner's Prefect recorder is left out of the child
(each would import Prefect, seconds of CPU that have nothing to do with what is tested)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from autoexec.jobdir.lock import EXIT_BUSY, JobLock
from tests.fake_console import TOKEN, USER, FakeConsole
from tests.waiting import wait_until
from tests.fixtures_core import cli_env, nodes_lines, script_op

pytestmark = pytest.mark.integration

NO_RECORDER = "import sys; from autoexec.cli.command import main; sys.exit(main(sys.argv[1:]))"


def _env(home: Path) -> dict[str, str]:
    """No Prefect recorder: these runs' records are not what is checked, and a recorder's late
    start warning would be a write into the job dir the snapshot comparison sees."""
    return dict(cli_env(home), AUTOEXEC_PREFECT_RECORD="0")


@pytest.fixture
def console() -> Iterator[FakeConsole]:
    fake = FakeConsole().start()
    yield fake
    fake.stop()


def _job_dir(home: Path, job_id: str) -> Path:
    return home / "data" / "job" / "/".join(job_id[i:i + 3] for i in range(0, len(job_id), 3))


def _snapshot(job_dir: Path) -> dict[str, Any]:
    """Everything a second run could have changed: every file's bytes and the directory listing."""
    return {str(p.relative_to(job_dir)): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
            for p in sorted(job_dir.rglob("*"))}


def test_second_launch_of_a_running_job_exits_3_and_changes_nothing(console: FakeConsole, tmp_path: Path) -> None:
    """Production mode, so the second run would otherwise touch the outbox and the console."""
    home, job = tmp_path / "home", "9201"
    go = tmp_path / "go"
    params = {"jobId": 9201, "tenant": "t1", "runNode": [json.loads(x) for x in nodes_lines(1).splitlines()[1:]],
              "runFlow": [{"groupNo": 0, "phases": [{"phaseName": "work", "phaseType": "runner_target", "operations": [
                  script_op("work_1", f'echo started > "$JOB_PATH/started"; while [ ! -f "{go}" ]; do sleep 0.05; done',
                            op_type="runner_target")]}]}]}
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(params))
    env = dict(_env(home), AUTOEXEC_SERVER_BASEURL=console.url, AUTOEXEC_SERVER_USERNAME=USER,
               AUTOEXEC_SERVER_PASSWORD=TOKEN, AUTOEXEC_OUTBOX_FLUSH_SECS="5", PREFECT_API_URL="http://127.0.0.1:9/api")
    argv = [sys.executable, "-c", NO_RECORDER, "--jobid", job, "--firstfire", "--paramsfile", str(params_file)]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    job_dir = _job_dir(home, job)
    try:
        wait_until(lambda: (job_dir / "started").exists(), 60, lambda: f"the tool to start: {first.stderr.read().decode()}")  # type: ignore[union-attr]
        queue = job_dir / "outbox" / "queue.jsonl"
        # the first run's callbacks so far are delivered: from here on it only waits in its tool
        wait_until(lambda: len(console.callbacks("updateNodeStatus")) >= 1 and not _undelivered(job_dir), 60,
                   "the first run's callbacks delivered")
        before, requests = _snapshot(job_dir), len(console.log)
        record = json.loads((job_dir / "autoexec.pid").read_text())
        assert record["pid"] == first.pid

        second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == EXIT_BUSY == 3
        assert second.stderr.strip().splitlines() == [
            f"autoexec: error: job {job} is already running (pid {first.pid}); this run changed nothing"]
        assert _snapshot(job_dir) == before  # status, logs, console.hislog, pid file, outbox
        assert len(console.log) == requests, [r.api for r in console.log[requests:]]
        assert queue.exists()
        assert first.poll() is None
    finally:
        go.touch()
        first.wait(60)
    assert first.returncode == 0, first.stderr.read().decode()  # type: ignore[union-attr]
    assert (job_dir / "autoexec.pid").read_bytes() == b""  # nobody runs the job now


def _undelivered(job_dir: Path) -> bool:
    """The outbox sender records how far it got (its ack cursor); compare with what is queued."""
    queue = job_dir / "outbox" / "queue.jsonl"
    if not queue.exists():
        return False
    try:
        return int(json.loads((job_dir / "outbox" / "acked").read_text())["offset"]) < queue.stat().st_size
    except (OSError, ValueError, KeyError):
        return True


def test_abort_sent_at_start_leaves_every_op_unrun(jobs: Any) -> None:
    """``--abort`` right after the job was launched — also before it could have written its pid
    record — stops it before its first op: exit 1, no tool started, no node status. The later
    delays may land after the first op started (then the run is simply aborted or done); most land
    before it, and a lost abort would let every one of them run its ops."""
    marker = jobs.tmp / "ran"
    params, nodes = jobs.write({"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner_target",
                               "operations": [script_op("t_1", f'touch "{marker}"', "runner_target")]}]}]},
                               nodes_lines(300))
    env = _env(jobs.home)
    before_first_op = 0
    for n, delay in enumerate([0.0, 0.0, 0.01, 0.03, 0.06, 0.1, 0.15, 0.2]):
        job = f"93{n:02d}"
        marker.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", NO_RECORDER, "-d", "-j", job, "-p", str(params),
                                 "-n", str(nodes)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(delay)
        abort = subprocess.Popen([sys.executable, "-m", "autoexec.cli.command", "-d", "-j", job, "--abort"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        abort.communicate(timeout=60)
        code = proc.wait(60)
        job_dir = _job_dir(jobs.home, job)
        if list((job_dir / "status").rglob("*.json")):  # nodes had started before the abort arrived
            continue
        before_first_op += 1
        assert code == 1, proc.stderr.read().decode()  # type: ignore[union-attr]
        console = (job_dir / "log" / "console.txt").read_text()
        assert "INFO: Job killed." in console and f"Job {job} finished, status:aborted." in console
        assert not marker.exists()
    assert before_first_op >= 4, f"only {before_first_op} of 8 runs were stopped before their first op"


def test_pause_sent_at_start_stops_before_the_first_op(jobs: Any) -> None:
    marker = jobs.tmp / "ran"
    params, nodes = jobs.write({"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner_target",
                               "operations": [script_op("t_1", f'touch "{marker}"', "runner_target")]}]}]},
                               nodes_lines(1))
    env = _env(jobs.home)
    proc = subprocess.Popen([sys.executable, "-c", NO_RECORDER, "-d", "-j", "9302", "-p", str(params),
                             "-n", str(nodes)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    subprocess.run([sys.executable, "-m", "autoexec.cli.command", "-d", "-j", "9302", "--pause"], env=env,
                   capture_output=True, timeout=60)
    assert proc.wait(60) == 0, proc.stderr.read().decode()  # type: ignore[union-attr]
    assert "status:paused" in (_job_dir(jobs.home, "9302") / "log" / "console.txt").read_text()
    assert not marker.exists()


def test_a_request_older_than_the_run_is_ignored(jobs: Any) -> None:
    """A ``--abort`` that found nothing must not stop a run launched later."""
    params, nodes = jobs.write({"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner",
                               "operations": [script_op("t_1", "true", "runner")]}]}]})
    env = _env(jobs.home)
    gone = subprocess.run([sys.executable, "-m", "autoexec.cli.command", "-d", "-j", "9303", "--abort"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 2 and "Can not find job 9303 process" in gone.stdout
    time.sleep(0.05)  # process start times are counted in clock ticks
    run = subprocess.run([sys.executable, "-c", NO_RECORDER, "-d", "-j", "9303", "-p", str(params)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert not (_job_dir(jobs.home, "9303") / "autoexec.request").exists()


def test_deployment_run_of_a_running_job_ends_cancelled_with_the_holder(jobs: Any) -> None:
    """A retried REST trigger of a running job: the flow body returns at once, naming the run
    that holds the job, and writes nothing."""
    from autoexec.flows.job_flow import job_flow

    job_dir = _job_dir(jobs.home, "9304")
    with JobLock.acquire(job_dir, "9304", flow_run_id="0b5e-first"):
        before = _snapshot(job_dir)
        state = job_flow.fn(job_id=9304, params={"runFlow": []}, dev_mode=True)
        assert _snapshot(job_dir) == before
    assert state.type.value == "CANCELLED"
    assert state.message == f"job 9304 is already running (pid {os.getpid()}, Prefect flow run 0b5e-first); " \
                            "this run changed nothing"
