"""Benchmark: one job over three runners, coordinated by Prefect, against the same job run as
three separate CLI jobs (one per runner, as the console launches them, with no barrier between
them). Prints, side by side: trigger-to-first-op latency, the coordination cost of each barrier
(from the last op of one step ending to the first op of the next starting), and wall times.

    python bench/multirunner.py [--nodes-per-runner 4] [--repeat 1]

Everything is started here and removed at the end: a PostgreSQL cluster (the distribution's
binaries), a Prefect server on it, the deployments of prefect.yaml, and three process workers
with their own AUTOEXEC_HOME, each serving the queue ``runner-<id>`` (runner 1's also
``coordinator``). Set-up time is printed separately: it is paid once, not per job.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.fixtures_postgres import cluster_stop, start_cluster, start_prefect, stop_process_group  # noqa: E402

import requests  # noqa: E402

RUNNERS = (1, 2, 3)


def op(op_id: str, phase: str, marks: Path) -> dict[str, Any]:
    script = f's=$(date +%s.%N)\necho "$s $(date +%s.%N) {phase} $NODE_NAME $RUNNER_ID" >> {marks}\n'
    return {"opId": op_id, "opName": phase, "opType": "runner_target", "isScript": 1, "interpreter": "bash",
            "scriptContent": script, "opt": {}, "desc": {}}


def job(marks: Path, per_runner: int) -> tuple[dict[str, Any], str, list[str], Callable[[str, str], str]]:
    """g1 oneShot, g2 grayScale in 2 rounds, g3 oneShot: four steps, three barriers."""
    params = {"runFlow": [
        {"groupNo": 1, "phases": [{"phaseName": "a", "phaseType": "runner_target", "operations": [op("a_1", "a", marks)]}]},
        {"groupNo": 2, "execStrategy": "grayScale", "roundCount": 2,
         "phases": [{"phaseName": "b", "phaseType": "runner_target", "operations": [op("b_1", "b", marks)]}]},
        {"groupNo": 3, "phases": [{"phaseName": "c", "phaseType": "runner_target", "operations": [op("c_1", "c", marks)]}]},
    ]}
    total = per_runner * len(RUNNERS)
    lines = [json.dumps({"jobRunnerIds": list(RUNNERS), "localRunnerId": 1, "totalCount": total})]
    for i in range(total):
        lines.append(json.dumps({"resourceId": 1000 + i, "runnerId": RUNNERS[i % 3], "host": f"10.4.{i // 256}.{i % 256}",
                                 "port": 22, "nodeName": f"n{i}", "protocol": "ssh", "username": "u", "password": "p"}))
    half = (total + 1) // 2

    def step(phase: str, node: str) -> str:
        if phase == "b":
            return "g2-r1" if int(node[1:]) < half else "g2-r2"
        return {"a": "g1", "c": "g3"}[phase]

    return params, "\n".join(lines) + "\n", ["g1", "g2-r1", "g2-r2", "g3"], step


def read_marks(path: Path) -> list[tuple[float, float, str, str]]:
    out = []
    for line in path.read_text().splitlines():
        start, end, phase, node, _ = line.split()
        out.append((float(start), float(end), phase, node))
    return out


class Estate:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cluster = start_cluster(Path(tempfile.mkdtemp(prefix="autoexec-pg-")))
        # a 10,000-node job's inline nodes are over Prefect's default 512 KiB parameter limit
        self.server, info = start_prefect(self.cluster.url("prefect"), self.cluster.root,
                                          extra_env={"PREFECT_SERVER_API_MAX_PARAMETER_SIZE": "0"})
        self.api = info.url
        self.workers: list[subprocess.Popen[bytes]] = []

    def env(self, home: Path) -> dict[str, str]:
        out = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        out.update({"PREFECT_API_URL": self.api, "PREFECT_HOME": str(home / ".prefect-client"), "PWD": str(REPO),
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "1",
                    "PREFECT_RUNNER_POLL_FREQUENCY": "1", "AUTOEXEC_HOME": str(home)})
        return out

    def deploy(self, limit: int | None = None) -> str:
        """Work pool, queues, deployments and the workers. ``limit``: each runner worker runs at most
        ``(lookahead + 1) * limit`` flow runs at once (lookahead 2 here, to compare both) and the coordinator queue gets a worker of its own running at
        most ``limit`` jobs (a job has at most lookahead + 1 parts per runner alive: the step running
        and the next ones waiting), so coordinators can never take the slots their parts need."""
        for home in ["deployer", "host-c", *(f"host-{r}" for r in RUNNERS)]:
            (self.tmp / home).mkdir(exist_ok=True)
        env = self.env(self.tmp / "deployer")
        prefect = [sys.executable, "-m", "prefect"]
        subprocess.run(prefect + ["work-pool", "create", "autoexec", "--type", "process"], env=env, check=True, capture_output=True)
        for queue in [f"runner-{r}" for r in RUNNERS] + ["coordinator"]:
            subprocess.run(prefect + ["work-queue", "create", queue, "--pool", "autoexec"], env=env, check=True, capture_output=True)
        subprocess.run(prefect + ["--no-prompt", "deploy", "--all"], cwd=REPO, env=env, check=True, capture_output=True)
        workers = [(f"host-{r}", ["-q", f"runner-{r}"] + (["-q", "coordinator"] if r == 1 and limit is None else []),
                    [] if limit is None else ["--limit", str(3 * limit)]) for r in RUNNERS]
        if limit is not None:
            workers.append(("host-c", ["-q", "coordinator"], ["--limit", str(limit)]))
        for home, queues, limits in workers:
            log = open(self.tmp / f"worker-{home}.log", "ab")
            self.workers.append(subprocess.Popen(prefect + ["worker", "start", "--pool", "autoexec", *queues, *limits],
                                                 env=self.env(self.tmp / home), cwd=self.tmp, stdout=log,
                                                 stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
        return str(requests.get(f"{self.api}/deployments/name/autoexec-coordinator/coordinated", timeout=30).json()["id"])

    def close(self) -> None:
        for proc in self.workers:
            stop_process_group(proc)
        stop_process_group(self.server)
        cluster_stop(self.cluster)
        shutil.rmtree(self.cluster.root, ignore_errors=True)


def coordinated(est: Estate, dep: str, job_id: str, params: dict[str, Any], nodes: str, **extra: Any) -> tuple[float, float]:
    body = {"parameters": {"job_id": job_id, "params": params, "nodes": nodes, "first_fire": True, **extra}}
    t0 = time.time()
    run_id = requests.post(f"{est.api}/deployments/{dep}/create_flow_run", json=body, timeout=30).json()["id"]
    while True:
        run = requests.get(f"{est.api}/flow_runs/{run_id}", timeout=30).json()
        if run["state_type"] in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
            break
        time.sleep(0.1)
    if run["state_type"] != "COMPLETED":
        raise SystemExit(f"coordinated job {job_id} ended {run['state_type']}: {run['state'].get('message')}")
    return t0, time.time()


def part_end_times(est: Estate, job_id: str) -> dict[str, float]:
    """step label -> when the last part of that step ended (its run's end time)."""
    from datetime import datetime

    body = {"flow_runs": {"name": {"like_": f"job-{job_id}/runner-"}}, "limit": 200}
    out: dict[str, float] = {}
    for run in requests.post(f"{est.api}/flow_runs/filter", json=body, timeout=30).json():
        if run.get("end_time"):
            label = run["name"].rsplit("/", 1)[1]
            end = datetime.fromisoformat(run["end_time"].replace("Z", "+00:00")).timestamp()
            out[label] = max(out.get(label, 0.0), end)
    return out


def separate_cli(est: Estate, job_id: str, params: dict[str, Any], nodes: str) -> tuple[float, float]:
    inputs = est.tmp / f"cli-{job_id}"
    inputs.mkdir()
    (inputs / "params.json").write_text(json.dumps(params))
    (inputs / "nodes.jsonl").write_text(nodes)
    t0 = time.time()
    procs = [subprocess.Popen([sys.executable, "-m", "autoexec.cli.command", "-d", "-j", job_id, "-p", str(inputs / "params.json"),
                               "-n", str(inputs / "nodes.jsonl"), "--passthroughenv", json.dumps({"runnerId": r})],
                              env=est.env(est.tmp / f"cli-host-{r}"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for r in RUNNERS]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"CLI job {job_id} failed: {err.decode()[-500:]}")
    return t0, time.time()


def compare(est: Estate, dep: str, per_runner: int, repeat: int, lookaheads: tuple[int, ...] = (2,)) -> None:
    """The same job coordinated (once per coordinator ``lookahead``) and as three CLI jobs,
    ``repeat`` times; prints the table."""
    rows = []
    split: dict[str, list[tuple[float, float]]] = {}
    for rep in range(repeat):
        for number, mode in enumerate([f"coordinated, lookahead {n}" for n in lookaheads] + ["cli"]):
            marks = est.tmp / f"marks-{number}-{rep}"
            params, nodes, steps, step_of = job(marks, per_runner)
            job_id = f"95{rep}{number}"
            if mode != "cli":
                t0, t1 = coordinated(est, dep, job_id, params, nodes, lookahead=int(mode.rsplit(" ", 1)[1]))
            else:
                t0, t1 = separate_cli(est, job_id, params, nodes)
            lines = read_marks(marks)
            by_step: dict[str, list[tuple[float, float]]] = {}
            for start, end, phase, node in lines:
                by_step.setdefault(step_of(phase, node), []).append((start, end))
            gaps = [min(s for s, _ in by_step[b]) - max(e for _, e in by_step[a]) for a, b in zip(steps, steps[1:], strict=False)]
            rows.append((mode, min(s for s, _, _, _ in lines) - t0, gaps, t1 - t0, len(lines)))
            if mode != "cli":  # where a barrier's time goes: the step's parts ending, then the next starting
                ends = part_end_times(est, job_id)
                for a, b in zip(steps, steps[1:], strict=False):
                    end = max((v for k, v in ends.items() if k.startswith(a)), default=0.0)
                    if end:
                        split.setdefault(mode, []).append((end - max(e for _, e in by_step[a]), min(s for s, _ in by_step[b]) - end))
    total = per_runner * len(RUNNERS)
    print(f"\njob: {total} nodes over runners 1-3, 3 groups (oneShot, grayScale x2 rounds, oneShot) = 4 steps, 3 barriers")
    print(f"{'mode':<44} {'trigger->first op':>18} {'per barrier (mean, min-max)':>30} {'wall':>8} {'ops':>5}")
    for mode, first, gaps, wall, ops in rows:
        label = f"Prefect-{mode} (1 trigger)" if mode != "cli" else "3 separate CLI jobs (no barrier)"
        barrier = f"{mean(gaps):.2f} s ({min(gaps):.2f}-{max(gaps):.2f})"
        print(f"{label:<44} {first:>16.2f} s {barrier:>30} {wall:>6.1f} s {ops:>5}")
    for mode, pairs in split.items():
        print(f"{mode}: a barrier, split (mean): last op of a step -> its last part's run ended "
              f"{mean(a for a, _ in pairs):.2f} s; -> first op of the next step {mean(b for _, b in pairs):.2f} s")
    print("\n(CLI jobs: devmode has no console, so nothing holds a runner at a barrier; the 'per barrier' column")
    print(" there is how far apart the steps are anyway, negative when runners overlap them.)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes-per-runner", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--lookahead", default="1,2", help="coordinator lookaheads to compare (comma-separated)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="autoexec-bench-mr-"))
    t = time.perf_counter()
    est = Estate(tmp)
    print(f"set-up: PostgreSQL + Prefect server {time.perf_counter() - t:.1f} s", flush=True)
    try:
        t = time.perf_counter()
        dep = est.deploy()
        print(f"set-up: deploy + 3 workers {time.perf_counter() - t:.1f} s", flush=True)
        time.sleep(5)  # workers polling
        compare(est, dep, args.nodes_per_runner, args.repeat, tuple(int(n) for n in args.lookahead.split(",")))
    finally:
        est.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
