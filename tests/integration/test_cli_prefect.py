"""``autoexec`` as an operator runs it: real processes, a real Prefect server, real signals, and
the record the machine's recorder writes, read back as the UI reads it."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_core import EXAMPLES, cli_env, nodes_lines, process_running, script_op
from tests.prefect_record import API_POLL, api_url, call, final_run, flow_runs, job_record, logs, task_runs
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def _autoexec(home: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autoexec.cli.command", *args], env=cli_env(home), capture_output=True,
                          text=True, timeout=120, **kw)  # type: ignore[call-overload]


def _job_dir(home: Path, job_id: str) -> Path:
    return home / "data" / "job" / "/".join(job_id[i:i + 3] for i in range(0, len(job_id), 3))


def _states(record: dict[str, Any]) -> dict[str, str]:
    return {name: t["state_type"] for tasks in record["tasks"].values() for name, t in tasks.items()}


def test_demo_job_is_one_flow_run_with_group_subflows_and_node_tasks(prefect_home: Path) -> None:
    job = "7001"
    proc = _autoexec(prefect_home, "--devmode", "--jobid", job, "--firstfire",
                     "--paramsfile", str(EXAMPLES / "demo/params.json"), "--nodesfile", str(EXAMPLES / "demo/nodes.jsonl"))
    assert proc.returncode == 0, proc.stderr
    rec = job_record(prefect_home, job)  # written by the machine's recorder, a moment after the job ended
    run = rec["run"]
    assert run["state_type"] == "COMPLETED" and run["state"]["message"] == "job succeed"
    assert run["deployment_id"], "a CLI run belongs to the autoexec-cli deployment, so the UI offers Cancel/Pause"
    assert set(rec["groups"]) == {f"{job}/group-0", f"{job}/group-1", f"{job}/group-2"}
    assert {g["state_type"] for g in rec["groups"].values()} == {"COMPLETED"}
    group1 = rec["tasks"][f"{job}/group-1"]
    assert {"deploy/web1 10.9.0.11:22 #1001", "deploy/web5 10.9.0.15:22 #1005", "drain/runner",
            "restore/runner"} <= set(group1)
    assert set(_states(rec).values()) == {"COMPLETED"}
    # node log lines are in the node's task run, the console log in the job's run
    web1 = group1["deploy/web1 10.9.0.11:22 #1001"]["id"]
    node_logs = [m["message"] for m in logs(prefect_home, rec["groups"][f"{job}/group-1"]["id"])
                 if m["task_run_id"] == web1]
    assert any("Launched by ssh://deploy@10.9.0.11:22" in m for m in node_logs), node_logs
    job_logs = "\n".join(m["message"] for m in logs(prefect_home, run["id"]))
    assert f"INFO: Job {job} finished, status:succeed." in job_logs
    artifacts = call("POST", f"{api_url(prefect_home)}/artifacts/filter",
                     {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}).json()
    by_type = {a["type"]: a for a in artifacts}
    assert len(artifacts) == 2 and set(by_type) == {"markdown", "link"}, artifacts
    summary = by_type["markdown"]["data"]
    assert f"## Job {job}: succeed" in summary and "| 1/deploy | succeed | 5 |" in summary
    # the job's HTML report, written at its end, is linked from the run
    report = _job_dir(prefect_home, job) / "report.html"
    assert by_type["link"]["data"] == report.resolve().as_uri()
    assert "web1" in report.read_text(encoding="utf-8")

    again = _autoexec(prefect_home, "--devmode", "--jobid", job)
    assert again.returncode == 0
    console = (_job_dir(prefect_home, job) / "log/console.txt").read_text()
    assert "INFO: Node(1001) status:succeed 10.9.0.11:22 had been executed, skip." in console
    rerun = wait_until(lambda: [r for r in flow_runs(prefect_home, f"job-{job}") if r["id"] != run["id"]
                              and r["state_type"] == "COMPLETED"], 180, interval=API_POLL)[0]
    assert rerun["state"]["message"].startswith("nothing to do: every node had already succeeded")


def test_failing_job_is_failed_with_one_line_per_failed_node(prefect_home: Path) -> None:
    env = dict(cli_env(prefect_home), AUTOEXEC_PREFECT_WAIT="60")  # exit only once the record is complete
    proc = subprocess.run([sys.executable, "-m", "autoexec.cli.command", "-d", "-j", "7002", "-p", str(EXAMPLES / "fail/params.json"),
                           "-n", str(EXAMPLES / "fail/nodes.jsonl")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    rec = job_record(prefect_home, "7002", timeout=5)
    assert rec["run"]["state_type"] == "FAILED"
    assert {n: g["state_type"] for n, g in rec["groups"].items()} == {"7002/group-0": "FAILED"}  # no group 1
    failed = rec["tasks"]["7002/group-0"]["check/web3 10.9.0.13:22 #1003"]
    assert failed["state_type"] == "FAILED"
    assert failed["state"]["message"] == ("check/web3 10.9.0.13:22 #1003 failed: diskcheck exited with status 3 "
                                          "(exit 3)")
    for run_id in [rec["run"]["id"], rec["groups"]["7002/group-0"]["id"]]:
        assert not [m for m in logs(prefect_home, run_id) if "Traceback" in m["message"]]


def _start_sleeper(home: Path, tmp: Path, job: str, ops: list[dict]) -> tuple[subprocess.Popen[str], Path]:
    params = tmp / f"{job}.json"
    params.write_text(json.dumps({"runFlow": [{"groupNo": 0, "phases": [
        {"phaseName": "p", "phaseType": "runner_target", "operations": ops}]}]}))
    nodes = tmp / f"{job}.jsonl"
    nodes.write_text(nodes_lines(2))
    proc = subprocess.Popen([sys.executable, "-m", "autoexec.cli.command", "-d", "-j", job, "-p", str(params), "-n", str(nodes)],
                            env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, params


@pytest.mark.parametrize("how", ["sigterm", "abort-helper"])
def test_abort_stops_children_within_seconds_and_the_record_is_cancelled(prefect_home: Path, tmp_path: Path,
                                                                         how: str) -> None:
    job = "7003" if how == "sigterm" else "7004"
    pids = tmp_path / "pids"
    pids.mkdir()
    op = script_op("sleep_1", f"sleep 300 & echo $! > {pids}/$NODE_NAME\nwait\n", "runner_target")
    proc, _ = _start_sleeper(prefect_home, tmp_path, job, [op])
    wait_until(lambda: len([p for p in pids.iterdir() if p.read_text().strip()]) == 2)
    started = time.monotonic()
    if how == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        helper = _autoexec(prefect_home, "--jobid", job, "--abort", "--devmode")
        assert helper.returncode == 0, helper.stdout + helper.stderr
    assert proc.wait(30) == 1
    children = [int(p.read_text()) for p in pids.iterdir()]
    wait_until(lambda: not any(process_running(pid) for pid in children), timeout=5)
    assert time.monotonic() - started < 10
    status = json.loads((_job_dir(prefect_home, job) / "status/p/10.1.0.1-22-101.json").read_text())
    assert status["status"] == "aborted"
    rec = job_record(prefect_home, job)
    assert rec["run"]["state_type"] == "CANCELLED"
    assert rec["groups"][f"{job}/group-0"]["state_type"] == "CANCELLED"
    assert set(_states(rec).values()) == {"CANCELLED"} and len(_states(rec)) == 2


def test_pause_helper_pauses_every_level_and_rerun_finishes(prefect_home: Path, tmp_path: Path) -> None:
    job = "7005"
    marks = tmp_path / "marks"
    marks.mkdir()
    ops = [script_op("first_1", f"touch {marks}/first.$NODE_NAME\nsleep 1\n", "runner_target"),
           script_op("second_1", f"touch {marks}/second.$NODE_NAME\n", "runner_target")]
    proc, _ = _start_sleeper(prefect_home, tmp_path, job, ops)
    wait_until(lambda: len(list(marks.glob("first.*"))) == 2)
    started = time.monotonic()
    helper = _autoexec(prefect_home, "--jobid", job, "--pause", "--devmode")
    assert helper.returncode == 0 and time.monotonic() - started < 5
    assert proc.wait(30) == 0
    assert not list(marks.glob("second.*"))
    status = json.loads((_job_dir(prefect_home, job) / "status/p/10.1.0.2-22-102.json").read_text())
    assert status["status"] == "paused"
    rec = job_record(prefect_home, job)
    assert rec["run"]["state_type"] == "PAUSED" and rec["groups"][f"{job}/group-0"]["state_type"] == "PAUSED"
    assert set(_states(rec).values()) == {"PAUSED"}
    rerun = _autoexec(prefect_home, "-d", "-j", job)
    assert rerun.returncode == 0
    assert len(list(marks.glob("second.*"))) == 2


def test_killed_job_process_leaves_a_crashed_record_not_a_running_one(prefect_home: Path, tmp_path: Path) -> None:
    job = "7006"
    marks = tmp_path / "marks"
    marks.mkdir()
    proc, _ = _start_sleeper(prefect_home, tmp_path, job, [script_op("s_1", f"touch {marks}/$NODE_NAME\nsleep 60\n",
                                                                    "runner_target")])
    wait_until(lambda: len(list(marks.iterdir())) == 2)
    wait_until(lambda: bool(flow_runs(prefect_home, f"job-{job}")), timeout=30, interval=API_POLL)
    proc.kill()  # SIGKILL: no job_end ever reaches the spool
    proc.wait(10)
    assert final_run(prefect_home, f"job-{job}")["state_type"] == "CRASHED"
    assert final_run(prefect_home, f"{job}/group-0")["state_type"] == "FAILED"
    group = final_run(prefect_home, f"{job}/group-0")
    assert {t["state_type"] for t in task_runs(prefect_home, group["id"])} == {"CRASHED"}
    wait_until(lambda: not list((prefect_home / "prefect" / "spool").glob(f"{job}-*")), 10)


def test_node_log_lines_reach_the_task_run_while_the_node_runs(prefect_home: Path, tmp_path: Path) -> None:
    job = "7007"
    op = script_op("step_1", 'echo "step one of 7007 done"\nsleep 60\n', "runner_target")
    proc, _ = _start_sleeper(prefect_home, tmp_path, job, [op])
    try:
        run = wait_until(lambda: [r for r in flow_runs(prefect_home, f"{job}/group-0") if r["state_type"] == "RUNNING"],
                         60, interval=API_POLL)[0]

        def streamed() -> bool:
            tasks = {t["id"] for t in task_runs(prefect_home, run["id"]) if t["state_type"] == "RUNNING"}
            return any("step one of 7007 done" in m["message"] and m["task_run_id"] in tasks
                       for m in logs(prefect_home, run["id"]))

        wait_until(streamed, 30, "a running node's log line in its running task run", interval=API_POLL)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
