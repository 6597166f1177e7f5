"""``autoexec`` as an operator runs it: real processes, a real Prefect server, real signals."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.fixtures_core import EXAMPLES, cli_env, nodes_lines, process_running, script_op

pytestmark = pytest.mark.integration


def _api(home: Path) -> str:
    return json.loads((home / "prefect" / "server.json").read_text())["url"]


def _flow_runs(home: Path, name_like: str) -> list[dict]:
    body = {"flow_runs": {"name": {"like_": name_like}}, "limit": 50}
    return requests.post(f"{_api(home)}/flow_runs/filter", json=body, timeout=10).json()


def _autoexec(home: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autoexec.cli", *args], env=cli_env(home), capture_output=True,
                          text=True, timeout=120, **kw)  # type: ignore[call-overload]


def _job_dir(home: Path, job_id: str) -> Path:
    return home / "data" / "job" / "/".join(job_id[i:i + 3] for i in range(0, len(job_id), 3))


def test_demo_job_is_one_flow_run_with_group_subflows_and_node_tasks(prefect_home: Path) -> None:
    job = "7001"
    proc = _autoexec(prefect_home, "--devmode", "--jobid", job, "--firstfire",
                     "--paramsfile", str(EXAMPLES / "demo/params.json"), "--nodesfile", str(EXAMPLES / "demo/nodes.jsonl"))
    assert proc.returncode == 0, proc.stderr
    # the record is written by the job's detached recorder process, a moment after the job ended
    assert _final_state(prefect_home, f"job-{job}") == "COMPLETED"
    runs = _flow_runs(prefect_home, f"%{job}%")
    by_name = {r["name"]: r for r in runs}
    for g in (0, 1, 2):
        assert by_name[f"{job}/group-{g}"]["state_type"] == "COMPLETED"
        assert by_name[f"{job}/group-{g}"]["parent_task_run_id"]
    group1 = by_name[f"{job}/group-1"]["id"]
    wanted = {"deploy/10.9.0.11-22-1001", "deploy/10.9.0.15-22-1005", "drain/local-0-0", "restore/local-0-0"}

    def task_names() -> set[str]:  # the server records task runs from an event stream, a little later
        tasks = requests.post(f"{_api(prefect_home)}/task_runs/filter", timeout=10,
                              json={"flow_runs": {"id": {"any_": [group1]}}, "limit": 50}).json()
        return {t["name"] for t in tasks}

    _wait_for(lambda: wanted <= task_names(), timeout=30)
    again = _autoexec(prefect_home, "--devmode", "--jobid", job)
    assert again.returncode == 0
    console = (_job_dir(prefect_home, job) / "log/console.txt").read_text()
    assert "INFO: Node(1001) status:succeed 10.9.0.11:22 had been executed, skip." in console

    def node_log_in_prefect() -> bool:  # a quiet CLI run still copies node logs into the run logs
        logs = requests.post(f"{_api(prefect_home)}/logs/filter", timeout=10,
                             json={"logs": {"flow_run_id": {"any_": [group1]}}, "limit": 200}).json()
        return any(m["message"].startswith("node deploy/10.9.0.11-22-1001 succeed") for m in logs)

    _wait_for(node_log_in_prefect, timeout=30)


def test_failing_job_exits_1_and_the_flow_run_is_failed(prefect_home: Path) -> None:
    env = dict(cli_env(prefect_home), AUTOEXEC_PREFECT_WAIT="60")  # exit only once the record is complete
    proc = subprocess.run([sys.executable, "-m", "autoexec.cli", "-d", "-j", "7002", "-p", str(EXAMPLES / "fail/params.json"),
                           "-n", str(EXAMPLES / "fail/nodes.jsonl")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert _flow_runs(prefect_home, "job-7002")[0]["state_type"] == "FAILED"
    groups = {r["name"]: r["state_type"] for r in _flow_runs(prefect_home, "7002/group-%")}
    assert groups == {"7002/group-0": "FAILED"}  # the failure stops the job before group 1


def _start_sleeper(home: Path, tmp: Path, job: str, ops: list[dict]) -> tuple[subprocess.Popen[str], Path]:
    params = tmp / f"{job}.json"
    params.write_text(json.dumps({"runFlow": [{"groupNo": 0, "phases": [
        {"phaseName": "p", "phaseType": "runner_target", "operations": ops}]}]}))
    nodes = tmp / f"{job}.jsonl"
    nodes.write_text(nodes_lines(2))
    proc = subprocess.Popen([sys.executable, "-m", "autoexec.cli", "-d", "-j", job, "-p", str(params), "-n", str(nodes)],
                            env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, params


def _wait_for(predicate, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def _final_state(home: Path, name: str, timeout: float = 60) -> str:
    def final() -> bool:
        runs = _flow_runs(home, name)
        return bool(runs) and runs[0]["state_type"] in FINAL
    _wait_for(final, timeout)
    return _flow_runs(home, name)[0]["state_type"]


@pytest.mark.parametrize("how", ["sigterm", "abort-helper"])
def test_abort_stops_children_within_seconds(prefect_home: Path, tmp_path: Path, how: str) -> None:
    job = "7003" if how == "sigterm" else "7004"
    pids = tmp_path / "pids"
    pids.mkdir()
    op = script_op("sleep_1", f"sleep 300 & echo $! > {pids}/$NODE_NAME\nwait\n", "runner_target")
    proc, _ = _start_sleeper(prefect_home, tmp_path, job, [op])
    _wait_for(lambda: len(list(pids.iterdir())) == 2)
    started = time.monotonic()
    if how == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        helper = _autoexec(prefect_home, "--jobid", job, "--abort", "--devmode")
        assert helper.returncode == 0, helper.stdout + helper.stderr
    assert proc.wait(30) == 1
    children = [int(p.read_text()) for p in pids.iterdir()]
    _wait_for(lambda: not any(process_running(pid) for pid in children), timeout=5)
    assert time.monotonic() - started < 10
    status = json.loads((_job_dir(prefect_home, job) / "status/p/10.1.0.1-22-101.json").read_text())
    assert status["status"] == "aborted"
    assert _final_state(prefect_home, f"job-{job}") == "CANCELLED"


def test_pause_helper_stops_at_op_boundary_and_rerun_finishes(prefect_home: Path, tmp_path: Path) -> None:
    job = "7005"
    marks = tmp_path / "marks"
    marks.mkdir()
    ops = [script_op("first_1", f"touch {marks}/first.$NODE_NAME\nsleep 1\n", "runner_target"),
           script_op("second_1", f"touch {marks}/second.$NODE_NAME\n", "runner_target")]
    proc, _ = _start_sleeper(prefect_home, tmp_path, job, ops)
    _wait_for(lambda: len(list(marks.glob("first.*"))) == 2)
    started = time.monotonic()
    helper = _autoexec(prefect_home, "--jobid", job, "--pause", "--devmode")
    assert helper.returncode == 0 and time.monotonic() - started < 5
    assert proc.wait(30) == 0
    assert not list(marks.glob("second.*"))
    status = json.loads((_job_dir(prefect_home, job) / "status/p/10.1.0.2-22-102.json").read_text())
    assert status["status"] == "paused"
    rerun = _autoexec(prefect_home, "-d", "-j", job)
    assert rerun.returncode == 0
    assert len(list(marks.glob("second.*"))) == 2


def test_killed_job_process_leaves_a_crashed_record_not_a_running_one(prefect_home: Path, tmp_path: Path) -> None:
    job = "7006"
    marks = tmp_path / "marks"
    marks.mkdir()
    proc, _ = _start_sleeper(prefect_home, tmp_path, job, [script_op("s_1", f"touch {marks}/$NODE_NAME\nsleep 60\n",
                                                                    "runner_target")])
    _wait_for(lambda: len(list(marks.iterdir())) == 2)
    _wait_for(lambda: bool(_flow_runs(prefect_home, f"job-{job}")), timeout=30)
    proc.kill()  # SIGKILL: no job_end ever reaches the spool
    proc.wait(10)
    assert _final_state(prefect_home, f"job-{job}") == "CRASHED"
    assert _final_state(prefect_home, f"{job}/group-0") == "FAILED"
    assert not list((prefect_home / "prefect" / "spool").glob(f"{job}-*"))
