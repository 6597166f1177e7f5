"""The ``autoexec-job`` deployment as an operator uses it: ``prefect deploy`` from prefect.yaml, a
process worker, runs triggered over REST, Cancel/Pause/Resume from the API, and the same
controls on a CLI-started run (no worker: the job's own watcher must act)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from tests.fixtures_core import EXAMPLES, REPO, cli_env, nodes_lines, process_running, script_op
from tests.integration.test_cli_prefect import _autoexec, _job_dir
from tests.prefect_record import API_POLL, api_url, call, flow_runs, logs, task_runs
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

POOL = "autoexec"


def _prefect_env(home: Path, tmp: Path) -> dict[str, str]:
    env = cli_env(home)
    env.update({"PREFECT_API_URL": api_url(home), "PREFECT_HOME": str(tmp / "prefect-client"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PWD": str(REPO),
                # the default 10 s polling would dominate every test
                "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_RUNNER_POLL_FREQUENCY": "1"})
    return env


def _stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """A Prefect process worker: the first signal only asks the worker to stop; the second one does."""
    for sig in (signal.SIGTERM, signal.SIGTERM):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.fixture(scope="session")
def deployment(prefect_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Deploys prefect.yaml and runs one process worker on its pool; yields the deployment id."""
    tmp = tmp_path_factory.mktemp("worker")
    env = _prefect_env(prefect_home, tmp)
    api = api_url(prefect_home)
    if requests.get(f"{api}/work_pools/{POOL}", timeout=10).status_code == 404:
        subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", POOL, "--type", "process"],
                       env=env, check=True, capture_output=True, timeout=60)
    deploy = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    dep = requests.get(f"{api}/deployments/name/autoexec-job/job", timeout=10).json()
    log = open(tmp / "worker.log", "wb")
    worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL], cwd=tmp, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield dep["id"]
    finally:
        _stop_worker(worker)
        log.close()


def _trigger(home: Path, dep_id: str, **parameters: Any) -> str:
    resp = call("POST", f"{api_url(home)}/deployments/{dep_id}/create_flow_run", {"parameters": parameters})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _run(home: Path, run_id: str) -> dict[str, Any]:
    return call("GET", f"{api_url(home)}/flow_runs/{run_id}").json()


def _wait_state(home: Path, run_id: str, state_type: str, timeout: float = 60, name: str | None = None) -> dict:
    final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
    seen: list[dict] = []

    def reached() -> dict | None:
        run = _run(home, run_id)
        seen.append(run)
        assert run["state_type"] not in final - {state_type}, run["state"]
        return run if run["state_type"] == state_type and (name is None or run["state_name"] == name) else None

    return wait_until(reached, timeout, lambda: f"{state_type}/{name or '*'}, still {seen[-1]['state_type']}/{seen[-1]['state_name']}",
                      interval=API_POLL)


def _set_state(home: Path, run_id: str, state_type: str) -> None:
    resp = call("POST", f"{api_url(home)}/flow_runs/{run_id}/set_state",
                {"state": {"type": state_type, "message": f"operator {state_type.lower()}"}})
    assert resp.json()["status"] == "ACCEPT", resp.text


def _inline_job(marks: Path, first_script: str) -> dict[str, Any]:
    ops = [script_op("first_1", f"touch {marks}/first.$NODE_NAME\n{first_script}", "runner_target"),
           script_op("second_1", f"touch {marks}/second.$NODE_NAME\n", "runner_target")]
    return {"params": {"runFlow": [{"groupNo": 0, "phases": [
        {"phaseName": "p", "phaseType": "runner_target", "operations": ops}]}]}, "nodes": nodes_lines(2)}


def _statuses(home: Path, job: str) -> set[str]:
    return {json.loads(p.read_text())["status"] for p in (_job_dir(home, job) / "status/p").glob("*.json")}


def test_triggered_run_executes_the_job_like_the_cli(prefect_home: Path, deployment: str) -> None:
    job = "7101"
    run_id = _trigger(prefect_home, deployment, job_id=job, first_fire=True,
                      params_file=str(EXAMPLES / "demo/params.json"), nodes_file=str(EXAMPLES / "demo/nodes.jsonl"))
    run = _wait_state(prefect_home, run_id, "COMPLETED")
    assert run["name"] == f"job-{job}"
    jobdir = _job_dir(prefect_home, job)
    assert json.loads((jobdir / "status/deploy/10.9.0.11-22-1001.json").read_text())["status"] == "succeed"
    assert f"INFO: Job {job} finished, status:succeed." in (jobdir / "log/console.txt").read_text()

    groups = _groups(prefect_home, run_id)
    assert {n: g["state_type"] for n, g in groups.items()} == {f"{job}/group-{n}": "COMPLETED" for n in range(3)}
    tasks = {t["name"]: t for t in task_runs(prefect_home, groups[f"{job}/group-1"]["id"])}
    web1 = tasks["deploy/web1 10.9.0.11:22 #1001"]
    assert web1["state_type"] == "COMPLETED"
    node_logs = [m["message"] for m in logs(prefect_home, groups[f"{job}/group-1"]["id"]) if m["task_run_id"] == web1["id"]]
    assert any("Launched by ssh://deploy@10.9.0.11:22" in m for m in node_logs), node_logs


def _groups(home: Path, run_id: str) -> dict[str, dict[str, Any]]:
    """The group runs recorded under one job flow run (through their parent task runs)."""
    parents = {t["id"] for t in task_runs(home, run_id)}
    job = _run(home, run_id)["name"].removeprefix("job-")
    return {r["name"]: r for r in flow_runs(home, f"{job}/group-%") if r["parent_task_run_id"] in parents}


def _task_states(home: Path, run_id: str) -> list[str]:
    return [t["state_type"] for g in _groups(home, run_id).values() for t in task_runs(home, g["id"])]


def test_a_failed_node_is_one_failed_task_line_and_no_traceback(prefect_home: Path, deployment: str) -> None:
    job = "7109"
    run_id = _trigger(prefect_home, deployment, job_id=job, params_file=str(EXAMPLES / "fail/params.json"),
                      nodes_file=str(EXAMPLES / "fail/nodes.jsonl"))
    _wait_state(prefect_home, run_id, "FAILED")
    wait_until(lambda: [g["state_type"] for g in _groups(prefect_home, run_id).values()] == ["FAILED"], 20, interval=API_POLL)
    group = next(iter(_groups(prefect_home, run_id).values()))
    failed = [t for t in task_runs(prefect_home, group["id"]) if t["state_type"] == "FAILED"]
    assert [t["state"]["message"] for t in failed] == [
        "check/web3 10.9.0.13:22 #1003 failed: diskcheck exited with status 3 (exit 3)"]
    _no_traceback(prefect_home, run_id)
    assert not [m for m in logs(prefect_home, group["id"]) if "Traceback" in m["message"]]


def _no_traceback(home: Path, run_id: str) -> None:
    """Once the flow run's process has logged its end (the engine logs the final state, then
    exits), none of the run's logs carries a traceback."""
    wait_until(lambda: any("Finished in state" in m["message"] for m in logs(home, run_id)), 30, interval=API_POLL)
    time.sleep(3)  # what the exiting process sends after that line arrives with it or just after
    tracebacks = [m["message"] for m in logs(home, run_id) if "Traceback" in m["message"]]
    assert not tracebacks, tracebacks[0]


def test_cancel_from_the_api_kills_the_tools_within_5s(prefect_home: Path, deployment: str, tmp_path: Path) -> None:
    job = "7102"
    inputs = _inline_job(tmp_path, f"sleep 60 & echo $! > {tmp_path}/pid.$NODE_NAME\nwait\n")
    run_id = _trigger(prefect_home, deployment, job_id=job, **inputs)
    wait_until(lambda: len(list(tmp_path.glob("pid.*"))) == 2, timeout=180)
    wait_until(lambda: all(p.read_text().strip() for p in tmp_path.glob("pid.*")), timeout=5)
    children = [int(p.read_text()) for p in tmp_path.glob("pid.*")]
    _set_state(prefect_home, run_id, "CANCELLING")
    started = time.monotonic()
    wait_until(lambda: not any(process_running(pid) for pid in children), timeout=5)
    assert time.monotonic() - started < 5
    _wait_state(prefect_home, run_id, "CANCELLED", timeout=30)
    assert _statuses(prefect_home, job) == {"aborted"}
    assert "INFO: Job killed." in (_job_dir(prefect_home, job) / "log/console.txt").read_text()
    wait_until(lambda: [g["state_type"] for g in _groups(prefect_home, run_id).values()] == ["CANCELLED"], 20, interval=API_POLL)
    assert _task_states(prefect_home, run_id) == ["CANCELLED", "CANCELLED"]
    _no_traceback(prefect_home, run_id)


@pytest.mark.parametrize("how", ["api", "pause-helper"])
def test_pause_suspends_the_run_and_resume_finishes_the_job(prefect_home: Path, deployment: str, tmp_path: Path,
                                                            how: str) -> None:
    job = "7103" if how == "api" else "7104"
    run_id = _trigger(prefect_home, deployment, job_id=job, **_inline_job(tmp_path, "sleep 2\n"))
    wait_until(lambda: len(list(tmp_path.glob("first.*"))) == 2, timeout=180)
    if how == "api":
        _set_state(prefect_home, run_id, "PAUSED")
    else:
        helper = _autoexec(prefect_home, "--jobid", job, "--pause", "--devmode")
        assert helper.returncode == 0, helper.stdout + helper.stderr
    run = _wait_state(prefect_home, run_id, "PAUSED", name="Suspended", timeout=30)
    assert run["state"]["state_details"]["pause_reschedule"] is True
    assert _statuses(prefect_home, job) == {"paused"}
    assert not list(tmp_path.glob("second.*"))
    assert [g["state_type"] for g in _groups(prefect_home, run_id).values()] == ["PAUSED"]
    assert _task_states(prefect_home, run_id) == ["PAUSED", "PAUSED"]

    answers: list[str] = []

    def resumed() -> bool:  # the embedded SQLite server may answer 500 under load: an operator retries
        resp = call("POST", f"{api_url(prefect_home)}/flow_runs/{run_id}/resume", {})
        answers.append(f"{resp.status_code} {resp.text[:300]}")
        return resp.status_code < 300 and resp.json().get("status") == "ACCEPT"

    wait_until(resumed, 15, lambda: f"the resume to be accepted: {answers}", interval=0.5)
    _wait_state(prefect_home, run_id, "COMPLETED", timeout=180)
    assert len(list(tmp_path.glob("second.*"))) == 2
    assert _statuses(prefect_home, job) == {"succeed"}
    console = (_job_dir(prefect_home, job) / "log/console.txt").read_text()
    assert console.count(f"INFO: JobId:{job} start...") == 2
    # resumed, the run continues its own group and node runs: nothing appears twice
    wait_until(lambda: [g["state_type"] for g in _groups(prefect_home, run_id).values()] == ["COMPLETED"], 20, interval=API_POLL)
    assert _task_states(prefect_home, run_id) == ["COMPLETED", "COMPLETED"]


def _cli_job(home: Path, tmp: Path, job: str, inputs: dict[str, Any]) -> subprocess.Popen[str]:
    params = tmp / "params.json"
    params.write_text(json.dumps(inputs["params"]))
    nodes = tmp / "nodes.jsonl"
    nodes.write_text(inputs["nodes"])
    return subprocess.Popen([sys.executable, "-m", "autoexec.cli.command", "-d", "-j", job, "-p", str(params), "-n", str(nodes)],
                            env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cli_run_id(home: Path, job: str) -> str:
    body = {"flow_runs": {"name": {"any_": [f"job-{job}"]}}, "limit": 1}
    runs = call("POST", f"{api_url(home)}/flow_runs/filter", body).json()
    return str(runs[0]["id"]) if runs else ""


def test_cli_run_is_cancelled_from_the_api(prefect_home: Path, tmp_path: Path) -> None:
    """No worker behind a CLI run: only the job's watcher can see the Cancel."""
    job = "7105"
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = _cli_job(prefect_home, tmp_path, job, _inline_job(marks, f"sleep 60 & echo $! > {marks}/pid.$NODE_NAME\nwait\n"))
    wait_until(lambda: len(list(marks.glob("pid.*"))) == 2, timeout=180)
    wait_until(lambda: all(p.read_text().strip() for p in marks.glob("pid.*")), timeout=5)
    children = [int(p.read_text()) for p in marks.glob("pid.*")]
    wait_until(lambda: _cli_run_id(prefect_home, job), timeout=30, interval=API_POLL)  # the recorder creates it a moment later
    _set_state(prefect_home, _cli_run_id(prefect_home, job), "CANCELLING")
    started = time.monotonic()
    wait_until(lambda: not any(process_running(pid) for pid in children), timeout=5)
    assert time.monotonic() - started < 5
    assert proc.wait(30) == 1
    assert _statuses(prefect_home, job) == {"aborted"}
    run_id = _cli_run_id(prefect_home, job)
    wait_until(lambda: _run(prefect_home, run_id)["state_type"] == "CANCELLED", timeout=30, interval=API_POLL)
    assert _run(prefect_home, run_id)["deployment_id"]  # what makes the UIs offer Cancel and Pause
    assert [g["state_type"] for g in _groups(prefect_home, run_id).values()] == ["CANCELLED"]
    assert _task_states(prefect_home, run_id) == ["CANCELLED", "CANCELLED"]


def test_cli_run_is_paused_from_the_api_and_refire_finishes(prefect_home: Path, tmp_path: Path) -> None:
    job = "7106"
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = _cli_job(prefect_home, tmp_path, job, _inline_job(marks, "sleep 4\n"))
    wait_until(lambda: len(list(marks.glob("first.*"))) == 2, timeout=180)
    wait_until(lambda: _cli_run_id(prefect_home, job), timeout=30, interval=API_POLL)
    _set_state(prefect_home, _cli_run_id(prefect_home, job), "PAUSED")
    assert proc.wait(30) == 0
    assert _statuses(prefect_home, job) == {"paused"}
    assert not list(marks.glob("second.*"))
    run_id = _cli_run_id(prefect_home, job)
    wait_until(lambda: [g["state_type"] for g in _groups(prefect_home, run_id).values()] == ["PAUSED"], 30, interval=API_POLL)
    assert _run(prefect_home, run_id)["state_type"] == "PAUSED"
    assert _task_states(prefect_home, run_id) == ["PAUSED", "PAUSED"]
    assert _autoexec(prefect_home, "-d", "-j", job).returncode == 0
    assert len(list(marks.glob("second.*"))) == 2


def test_blocks_register_from_the_package(prefect_home: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "prefect", "block", "register", "-m", "autoexec.blocks"], cwd=REPO,
                          env=_prefect_env(prefect_home, tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    types = requests.post(f"{api_url(prefect_home)}/block_types/filter", json={}, timeout=10).json()
    assert {"autoexec-console-credentials", "autoexec-mongodb-connection",
            "autoexec-node-credentials"} <= {t["slug"] for t in types}


def test_blocks_load_inside_a_deployment_run(prefect_home: Path, deployment: str, tmp_path: Path) -> None:
    """A node sent without a password names a credentials block; the tool on the runner gets it."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from autoexec.blocks import NodeCredentials

    with temporary_settings(updates={PREFECT_API_URL: api_url(prefect_home)}):
        NodeCredentials(username="deployer", password="bl0ck-s3cret").save("deploy-login", overwrite=True)
    node = json.loads(nodes_lines(1).splitlines()[1])
    node.update(password="", credentialsBlock="deploy-login")
    header = nodes_lines(1).splitlines()[0]
    check = '[ "$AUTOEXEC_NODE_PASSWORD" = "bl0ck-s3cret" ] && echo "login from block ok" || exit 3\n'
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner_target",
                                                     "operations": [script_op("c_1", check, "runner_target")]}]}]}
    job = "7108"
    run_id = _trigger(prefect_home, deployment, job_id=job, params=params, nodes=f"{header}\n{json.dumps(node)}\n")
    _wait_state(prefect_home, run_id, "COMPLETED")
    log = next((_job_dir(prefect_home, job) / "log/p").glob("*.txt")).read_text()
    assert "login from block ok" in log and "bl0ck-s3cret" not in log
