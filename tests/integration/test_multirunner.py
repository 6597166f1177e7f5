"""One job over three runner hosts, coordinated by Prefect on PostgreSQL.

Three process workers stand for three runner hosts: each has its own ``AUTOEXEC_HOME`` and serves
only the work queue ``runner-<id>`` (runner 1's also serves ``coordinator``). Jobs use
``runner_target``/``runner`` ops, so every op runs on the host of its node's runner and leaves a
line ``<start> <end> <phase> <node> <runner>`` in a shared marks file: the barriers are read from
those times, what each host ran from its own job dir.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from autoexec.jobdir.layout import JobDir
from tests.fixtures_core import REPO, process_running, script_op
from tests.fixtures_postgres import PrefectOnPostgres, stop_process_group
from tests.prefect_record import API_POLL
from tests.procs import pids_with_env
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

POOL = "autoexec"
RUNNERS = (1, 2, 3)


@dataclass
class Estate:
    api: str
    coordinated: str
    """the coordinator deployment's id"""
    homes: dict[int, Path]
    workers: dict[int, subprocess.Popen[bytes]]
    env: Callable[[int], dict[str, str]]
    tmp: Path

    def start_worker(self, runner: int) -> None:
        queues = ["--work-queue", f"runner-{runner}"] + (["--work-queue", "coordinator"] if runner == 1 else [])
        log = open(self.tmp / f"worker-{runner}.log", "ab")
        self.workers[runner] = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, *queues],
            cwd=self.tmp, env=self.env(runner), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()


def _api(method: str, url: str, body: Any = None) -> requests.Response:
    deadline = time.monotonic() + 30
    while True:
        try:
            resp = requests.request(method, url, json=body, timeout=15)
            if resp.status_code < 500:
                return resp
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            return resp
        time.sleep(0.3)


@pytest.fixture(scope="module")
def estate(prefect_postgres: PrefectOnPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    tmp = tmp_path_factory.mktemp("estate")
    api = prefect_postgres.url
    homes = {r: tmp / f"host-{r}" for r in RUNNERS}
    for home in homes.values():
        home.mkdir()

    def env(runner: int = 0) -> dict[str, str]:
        out = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        out.update({"PREFECT_API_URL": api, "PREFECT_HOME": str(tmp / f"prefect-client-{runner}"),
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PWD": str(REPO),
                    "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_RUNNER_POLL_FREQUENCY": "1",
                    "AUTOEXEC_HOME": str(homes.get(runner, tmp / "deployer"))})
        return out

    subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", POOL, "--type", "process"],
                   env=env(), check=True, capture_output=True, timeout=120)
    for queue in [f"runner-{r}" for r in RUNNERS] + ["coordinator"]:  # a worker polls only queues that exist
        subprocess.run([sys.executable, "-m", "prefect", "work-queue", "create", queue, "--pool", POOL],
                       env=env(), check=True, capture_output=True, timeout=120)
    deploy = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=REPO, env=env(),
                            capture_output=True, text=True, timeout=180)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    dep = _api("GET", f"{api}/deployments/name/autoexec-coordinator/coordinated").json()
    est = Estate(api, dep["id"], homes, {}, env, tmp)
    for runner in RUNNERS:
        est.start_worker(runner)
    try:
        def queues_polled() -> bool:
            queues = _api("POST", f"{api}/work_pools/{POOL}/queues/filter", {}).json()
            polled = {q["name"] for q in queues if q.get("last_polled")}
            return {f"runner-{r}" for r in RUNNERS} | {"coordinator"} <= polled
        wait_until(queues_polled, 120, "three workers polling their queues", interval=API_POLL)
        yield est
    finally:
        for proc in est.workers.values():
            stop_process_group(proc)
        for runner in RUNNERS:
            log = tmp / f"worker-{runner}.log"
            if log.exists():
                print(f"--- worker {runner} log (tail) ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))


# --- the job ---------------------------------------------------------------------------------
def _nodes(per_runner: int = 2, numbers: list[int] | None = None) -> str:
    """Nodes n1..n6 with runnerIds 1,2,3,1,2,3: each grayScale round of 3 has one node per runner.
    ``numbers``: these nodes instead (node i on runner ``(i - 1) % 3 + 1``)."""
    numbers = numbers or list(range(1, per_runner * len(RUNNERS) + 1))
    header = {"jobRunnerIds": list(RUNNERS), "localRunnerId": 1, "totalCount": len(numbers)}
    lines = [json.dumps(header)]
    for i in (n - 1 for n in numbers):
        runner = RUNNERS[i % len(RUNNERS)]
        lines.append(json.dumps({"resourceId": 101 + i, "runnerId": runner, "host": f"10.2.0.{i + 1}", "port": 22,
                                 "nodeName": f"n{i + 1}", "protocol": "ssh", "username": "u", "password": "pw"}))
    return "\n".join(lines) + "\n"


def _mark(marks: Path, phase: str, body: str = "sleep 0.3", node: str = "$NODE_NAME") -> str:
    return (f's=$(date +%s.%N)\n{body}\n'
            f'echo "$s $(date +%s.%N) {phase} {node} $RUNNER_ID" >> {marks}\n')


def _job(marks: Path, fail_runner: int | None = None, slow: str = "", groups: tuple[int, ...] = (1, 2, 3)) -> dict[str, Any]:
    fail = f'[ "$RUNNER_ID" = "{fail_runner}" ] && exit 3\n' if fail_runner else ""
    return {"runFlow": [g for g in [
        {"groupNo": 1, "execStrategy": "oneShot", "phases": [
            {"phaseName": "prep", "phaseType": "runner_target",
             "operations": [script_op("prep_1", _mark(marks, "prep", f"{slow}sleep 0.3\n{fail}"), "runner_target")]}]},
        {"groupNo": 2, "execStrategy": "grayScale", "roundCount": 2, "phases": [
            {"phaseName": "build", "phaseType": "runner", "execRound": "first",
             "operations": [script_op("build_1", _mark(marks, "build", node="local"), "runner")]},
            {"phaseName": "deploy", "phaseType": "runner_target",
             "operations": [script_op("deploy_1", _mark(marks, "deploy"), "runner_target")]}]},
        {"groupNo": 3, "execStrategy": "oneShot", "phases": [
            {"phaseName": "verify", "phaseType": "runner_target",
             "operations": [script_op("verify_1", _mark(marks, "verify"), "runner_target")]}]},
    ] if g["groupNo"] in groups]}


def _marks(path: Path) -> list[tuple[float, float, str, str, int]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        start, end, phase, node, runner = line.split()
        out.append((float(start), float(end), phase, node, int(runner)))
    return out


def _trigger(est: Estate, job: str, key: str | None = None, **parameters: Any) -> str:
    body: dict[str, Any] = {"parameters": {"job_id": job, "first_fire": True, **parameters}}
    if key:
        body["idempotency_key"] = key
    resp = _api("POST", f"{est.api}/deployments/{est.coordinated}/create_flow_run", body)
    assert resp.status_code in (200, 201), resp.text  # 200: a run with this idempotency key exists
    return str(resp.json()["id"])


def _run(est: Estate, run_id: str) -> dict[str, Any]:
    return _api("GET", f"{est.api}/flow_runs/{run_id}").json()


def _final(est: Estate, run_id: str, timeout: float = 600) -> dict[str, Any]:
    final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
    return wait_until(lambda: (r := _run(est, run_id))["state_type"] in final and r, timeout, f"run {run_id} to end", interval=API_POLL)


def _parts(est: Estate, job: str) -> list[dict[str, Any]]:
    body = {"flow_runs": {"name": {"like_": f"job-{job}/runner-"}}, "limit": 200}
    return _api("POST", f"{est.api}/flow_runs/filter", body).json()


def _status_files(home: Path, job: str) -> dict[str, dict[str, str]]:
    """phase -> {node triple: status} in one host's job dir."""
    root = JobDir.for_job(home / "data", job).root / "status"
    out: dict[str, dict[str, str]] = {}
    for path in root.glob("*/*.json") if root.exists() else []:
        out.setdefault(path.parent.name, {})[path.stem] = json.loads(path.read_text())["status"]
    return out


def _host_goes_away(home: Path) -> None:
    """SIGKILL every process of one simulated host (the worker runs each part in a session of its
    own, so killing the worker's process group is not enough)."""
    for pid in pids_with_env(f"AUTOEXEC_HOME={home}"):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _triples(runner: int, numbers: range | list[int] = range(1, 7)) -> set[str]:
    return {f"10.2.0.{i}-22-{100 + i}" for i in numbers if RUNNERS[(i - 1) % 3] == runner}


# --- tests -----------------------------------------------------------------------------------
def test_one_trigger_runs_each_runner_part_on_its_host_with_barriers(estate: Estate, tmp_path: Path) -> None:
    job, marks = "8201", tmp_path / "marks"
    prep_nodes = [1, 2, 3, 5, 6, 7]  # phase "prep" has a node list of its own: n7 instead of n4
    inputs = {"params": _job(marks, groups=(1, 2)), "nodes": _nodes(), "phase_nodes": {"prep": _nodes(numbers=prep_nodes)}}
    run_id = _trigger(estate, job, key="job-8201-fire-1", **inputs)
    assert _trigger(estate, job, key="job-8201-fire-1", **inputs) == run_id  # same key: nothing new
    run = _final(estate, run_id)
    assert run["state_type"] == "COMPLETED", run["state"]

    # one tree: every part is a subflow of the coordinator, on its runner's queue
    parts = _parts(estate, job)
    expected = {"g1": {1, 2, 3}, "g2-r1-build": {1}, "g2-r1-deploy": {1, 2, 3}, "g2-r2-deploy": {1, 2, 3}}
    seen: dict[str, set[int]] = {}
    for part in parts:
        _, queue, label = part["name"].split("/")
        assert part["work_queue_name"] == queue and part["state_type"] == "COMPLETED"
        assert part["parent_task_run_id"] is not None
        seen.setdefault(label, set()).add(int(queue.removeprefix("runner-")))
    assert seen == expected and len(parts) == 10  # the repeated trigger started nothing

    # each host ran only its own nodes (of the phase's own list for "prep"); the runner phase ran
    # on localRunnerId's host only; a host got only its own nodes of the phase's list
    for runner, home in estate.homes.items():
        status = _status_files(home, job)
        assert set(status["prep"]) == _triples(runner, prep_nodes) and set(status["prep"].values()) == {"succeed"}
        assert set(status["deploy"]) == _triples(runner) and set(status["deploy"].values()) == {"succeed"}
        assert ("build" in status) == (runner == 1)
        own = (JobDir.for_job(home / "data", job).phase_nodes("prep").read_text().splitlines())
        assert json.loads(own[0])["totalCount"] == 6
        assert {json.loads(line)["runnerId"] for line in own[1:]} == {runner} and len(own) == 3
    lines = _marks(marks)
    assert all(runner == RUNNERS[(int(node[1:]) - 1) % 3] for _, _, phase, node, runner in lines if node != "local")

    # barriers: nothing of a step starts before every runner finished the step before
    def step(phase: str, node: str) -> int:
        if phase == "prep":
            return 0
        if phase == "build":
            return 1
        return 2 if int(node[1:]) <= 3 else 3  # deploy, round 1 or 2

    by_step: dict[int, list[tuple[float, float]]] = {}
    for start, end, phase, node, _ in lines:
        by_step.setdefault(step(phase, node), []).append((start, end))
    assert sorted(by_step) == [0, 1, 2, 3] and len(lines) == 6 + 1 + 6
    for k in range(3):
        assert max(e for _, e in by_step[k]) <= min(s for s, _ in by_step[k + 1]), f"step {k + 1} started before step {k} ended"


def test_a_failed_node_on_one_runner_stops_every_runner_at_the_barrier(estate: Estate, tmp_path: Path) -> None:
    job, marks = "8202", tmp_path / "marks"
    run = _final(estate, _trigger(estate, job, params=_job(marks, fail_runner=2), nodes=_nodes()))
    assert run["state_type"] == "FAILED" and "runner-2 g1" in run["state"]["message"], run["state"]
    phases = {phase for _, _, phase, _, _ in _marks(marks)}
    assert phases == {"prep"}  # runners 1 and 3 finished group 1, nobody started group 2
    assert set(_status_files(estate.homes[1], job)["prep"].values()) == {"succeed"}
    assert set(_status_files(estate.homes[2], job)["prep"].values()) == {"failed"}
    # the next step's part had started and was waiting for this step: it ran nothing
    later = {p["name"]: p["state_type"] for p in _parts(estate, job) if not p["name"].endswith("/g1")}
    assert later == {f"job-{job}/runner-1/g2-r1-build": "CANCELLED"}
    assert "build" not in _status_files(estate.homes[1], job)


def test_cancel_of_the_job_reaches_every_runner_within_5s(estate: Estate, tmp_path: Path) -> None:
    job, marks, pids = "8203", tmp_path / "marks", tmp_path / "pids"
    pids.mkdir()
    slow = f"sleep 120 & echo $! > {pids}/$NODE_NAME\nwait\n"
    run_id = _trigger(estate, job, params=_job(marks, slow=slow), nodes=_nodes())
    wait_until(lambda: len([p for p in pids.iterdir() if p.read_text().strip()]) == 6, 120, "six sleeping tools")
    children = [int(p.read_text()) for p in pids.iterdir()]
    resp = _api("POST", f"{estate.api}/flow_runs/{run_id}/set_state", {"state": {"type": "CANCELLING"}})
    assert resp.json()["status"] == "ACCEPT", resp.text
    started = time.monotonic()
    wait_until(lambda: not any(process_running(pid) for pid in children), 10, "tools killed")
    assert time.monotonic() - started < 5
    assert _final(estate, run_id, 60)["state_type"] == "CANCELLED"
    parts = wait_until(lambda: (ps := _parts(estate, job)) and all(p["state_type"] == "CANCELLED" for p in ps) and ps,
                       60, "parts cancelled", interval=API_POLL)
    # group 1 on three runners, and the parts of the next step(s) waiting for them (those started
    # before the cancel reached the coordinator; with the default lookahead 1: runner 1's build)
    names = {p["name"].removeprefix(f"job-{job}/") for p in parts}
    assert {"runner-1/g1", "runner-2/g1", "runner-3/g1"} <= names
    assert names <= {"runner-1/g1", "runner-2/g1", "runner-3/g1", "runner-1/g2-r1-build", "runner-1/g2-r1-deploy",
                     "runner-2/g2-r1-deploy", "runner-3/g2-r1-deploy"}
    for home in estate.homes.values():
        assert set(_status_files(home, job)["prep"].values()) == {"aborted"}


def test_pause_of_the_job_reaches_every_runner_and_resume_finishes(estate: Estate, tmp_path: Path) -> None:
    job, marks, started = "8205", tmp_path / "marks", tmp_path / "started"
    started.mkdir()
    params = _job(marks, slow=f"touch {started}/$NODE_NAME\nsleep 10\n", groups=(1,))  # parts start seconds apart under load
    params["runFlow"][0]["phases"][0]["operations"].append(script_op("after_1", _mark(marks, "after", "true"), "runner_target"))
    run_id = _trigger(estate, job, params=params, nodes=_nodes())
    wait_until(lambda: len(list(started.iterdir())) == 6, 120, "all six nodes started")
    resp = _api("POST", f"{estate.api}/flow_runs/{run_id}/set_state", {"state": {"type": "PAUSED"}})
    assert resp.json()["status"] == "ACCEPT", resp.text
    paused_at = time.monotonic()
    wait_until(lambda: (ps := _parts(estate, job)) and all(p["state_type"] == "PAUSED" for p in ps), 10, "parts paused", interval=API_POLL)
    assert time.monotonic() - paused_at < 5
    wait_until(lambda: _run(estate, run_id)["state_name"] == "Suspended", 60, "the job suspended", interval=API_POLL)
    for home in estate.homes.values():
        assert set(_status_files(home, job)["prep"].values()) == {"paused"}
    assert {phase for _, _, phase, _, _ in _marks(marks)} == {"prep"}  # stopped at the op boundary

    resp = _api("POST", f"{estate.api}/flow_runs/{run_id}/resume", {})
    assert resp.json()["status"] == "ACCEPT", resp.text
    assert _final(estate, run_id)["state_type"] == "COMPLETED"
    assert sorted(node for _, _, phase, node, _ in _marks(marks) if phase == "prep") == [f"n{i}" for i in range(1, 7)]
    assert len([m for m in _marks(marks) if m[2] == "after"]) == 6
    for runner, home in estate.homes.items():
        assert _status_files(home, job) == {"prep": {t: "succeed" for t in _triples(runner)}}


def test_killed_runner_worker_crashes_its_part_and_refire_resumes_on_each_host(estate: Estate, tmp_path: Path) -> None:
    job, marks, started = "8204", tmp_path / "marks", tmp_path / "started"
    started.mkdir()
    # runner 2's nodes take long enough for its worker to be killed under them
    slow = f'touch {started}/$NODE_NAME\n[ "$RUNNER_ID" = 2 ] && [ ! -e {tmp_path}/fast ] && sleep 120\n'
    inputs = {"params": _job(marks, slow=slow, groups=(1,)), "nodes": _nodes()}
    run_id = _trigger(estate, job, stale_seconds=6, **inputs)
    wait_until(lambda: len(list(started.iterdir())) == 6, 120, "all six nodes started")
    wait_until(lambda: len(_marks(marks)) == 4, 60, "runners 1 and 3 done with group 1")
    _host_goes_away(estate.homes[2])  # worker, part and tools of runner 2, as a host crash would
    estate.workers[2].wait(10)
    run = _final(estate, run_id, 90)
    assert run["state_type"] == "FAILED", run["state"]
    crashed = [p for p in _parts(estate, job) if p["state_type"] == "CRASHED"]
    assert [p["name"] for p in crashed] == [f"job-{job}/runner-2/g1"]
    assert {phase for _, _, phase, _, _ in _marks(marks)} == {"prep"}

    (tmp_path / "fast").touch()
    estate.start_worker(2)
    run = _final(estate, _trigger(estate, job, **inputs), 150)
    assert run["state_type"] == "COMPLETED", run["state"]
    prep = [node for _, _, phase, node, _ in _marks(marks) if phase == "prep"]
    assert sorted(prep) == ["n1", "n2", "n3", "n4", "n5", "n6"]  # runners 1 and 3 skipped what succeeded
    for runner, home in estate.homes.items():
        assert _status_files(home, job) == {"prep": {t: "succeed" for t in _triples(runner)}}
