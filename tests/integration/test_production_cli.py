"""``autoexec`` in production mode as the neatlogic runner starts it: a real process, a real HTTP
console on loopback, the embedded Prefect server; the runner is killed with callbacks pending."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.fake_console import TOKEN, USER, FakeConsole
from tests.fixtures_core import cli_env, nodes_lines, script_op
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def console() -> Iterator[FakeConsole]:
    fake = FakeConsole().start()
    yield fake
    fake.stop()


def _env(home: Path, fake: FakeConsole) -> dict[str, str]:
    env = cli_env(home)
    env.update({"AUTOEXEC_SERVER_BASEURL": fake.url, "AUTOEXEC_SERVER_USERNAME": USER,
                "AUTOEXEC_SERVER_PASSWORD": TOKEN, "AUTOEXEC_OUTBOX_FLUSH_SECS": "1"})
    return env


def _job_dir(home: Path, job_id: str) -> Path:
    return home / "data" / "job" / "/".join(job_id[i:i + 3] for i in range(0, len(job_id), 3))


def _params(job_id: int, marker: Path) -> dict:
    wait = f'test -f "{marker}" || sleep 30'
    return {"jobId": job_id, "tenant": "t1",
            "runNode": [json.loads(line) for line in nodes_lines(2).splitlines()[1:]],
            "runFlow": [{"groupNo": 0, "execStrategy": "oneShot", "phases": [
                {"phaseName": "work", "phaseType": "runner_target",
                 "operations": [script_op("work_1", f"echo $$ > \"$JOB_PATH/pid-$NODE_HOST\"; {wait}",
                                          op_type="runner_target")]}]}]}


def test_killed_runner_leaves_callbacks_the_next_run_delivers(prefect_home: Path, console: FakeConsole,
                                                              tmp_path: Path) -> None:
    job = "9101"
    marker = tmp_path / "go"
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(_params(9101, marker)))
    env = _env(prefect_home, console)
    env["AUTOEXEC_CONSOLE_RETRIES"] = "1"
    console.set_mode("down")  # from the first callback on: params come from the file, nodes from runNode
    proc = subprocess.Popen([sys.executable, "-m", "autoexec.cli.command", "--jobid", job, "--firstfire", "--paramsfile",
                             str(params_file), "--passthroughenv", '{"runnerId": 1, "k": "v"}'], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    job_dir = _job_dir(prefect_home, job)
    try:
        wait_until(lambda: len(list(job_dir.glob("pid-*"))) >= 2, 60, "both tools started", required=False)
        queue = job_dir / "outbox/queue.jsonl"
        wait_until(lambda: queue.read_text().count('"running"') >= 3, 10, "three 'running' callbacks queued", required=False)
        os.killpg(proc.pid, signal.SIGKILL)  # the runner dies hard: no flush, no goodbye
        proc.wait(10)
    finally:
        for pid_file in job_dir.glob("pid-*"):
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except (ValueError, ProcessLookupError):
                pass
    assert console.callbacks() == []  # everything was queued while the console was down
    console.set_mode("up")
    marker.write_text("go")
    again = subprocess.run([sys.executable, "-m", "autoexec.cli.command", "--jobid", job,
                            "--passthroughenv", '{"runnerId": 1, "k": "v"}'],
                           env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    order = [(r.api, r.body.get("resourceId"), r.body.get("status")) for r in console.callbacks()
             if r.api in ("updateNodeStatus", "updatePhaseStatus")]
    rerun_starts = [i for i, c in enumerate(order) if c == ("updatePhaseStatus", None, "running")][1]
    for node in (101, 102):
        mine = [(i, s) for i, (api, n, s) in enumerate(order) if n == node]
        # "running" was queued by the killed runner and sent first by the next run; the re-run does not
        # repeat an unchanged status, and finishes the node
        assert [s for _, s in mine] == ["running", "succeed"]
        assert mine[0][0] < rerun_starts < mine[1][0]
    assert order[0] == ("updatePhaseStatus", None, "running")  # the killed runner's, delivered first
    assert len(console.callbacks("fireNextGroup")) == 1
    assert all(r.tenant == "t1" and r.body["passThroughEnv"] == {"runnerId": 1, "k": "v"}
               for r in console.callbacks() if r.api != "getParams")


def test_console_not_configured_is_one_line_exit_2(prefect_home: Path, tmp_path: Path) -> None:
    env = cli_env(prefect_home)
    proc = subprocess.run([sys.executable, "-m", "autoexec.cli.command", "--jobid", "9102"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "server.baseurl" in proc.stderr
