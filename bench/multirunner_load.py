"""Load benchmark of Prefect-coordinated jobs over three runner hosts, in one run:

1. the side-by-side of ``bench/multirunner.py``: trigger-to-first-op latency, per-barrier
   coordination cost and wall time of one multi-runner job, coordinated vs three separate CLI jobs;
2. a burst of ``--jobs`` (50) jobs triggered concurrently over REST, each spread over the three
   runners, each trigger sent twice with the same idempotency key (a retried call): every job must
   end with exactly one Completed coordinator run, exactly one Completed part per runner, and every
   node succeeded in the job dir of its own host — nothing lost, nothing run twice;
3. one job of ``--big-nodes`` (10,000) nodes over the three runners (a ``native/echo`` op, which
   costs the runner little per node): it must complete with every node succeeded, and the peak RSS
   of every runner-side process (worker, part flow run) is printed against 200 MB and checked.

    python bench/multirunner_load.py [--jobs 50] [--big-nodes 10000] [--limit 8] [--skip-compare]

Runner hosts are simulated on this machine: each worker has its own ``AUTOEXEC_HOME`` and serves
only ``runner-<id>``; the coordinator queue has a worker of its own. ``--limit`` caps the jobs a
coordinator worker runs at once (runner workers get three times that, see ``Estate.deploy``). Peak RSS is
each process's ``VmHWM`` from ``/proc``, sampled every half second. Exits non-zero when a check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.multirunner import RUNNERS, Estate, compare  # noqa: E402
from autoexec.jobdir.layout import JobDir  # noqa: E402

import requests  # noqa: E402

RSS_LIMIT_MB = 200
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


@dataclass
class Proc:
    home: str
    kind: str
    """``worker``, ``coordinator`` or ``part``"""
    peak_kb: int = 0
    name: str = ""


@dataclass
class RssSampler:
    """Peak RSS (VmHWM) of every Python process of the simulated hosts, by pid."""

    tmp: Path
    procs: dict[int, Proc] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "RssSampler":
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        marker = f"AUTOEXEC_HOME={self.tmp}/host-".encode()
        while not self.stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                pid = int(entry.name)
                try:
                    proc = self.procs.get(pid)
                    if proc is None:
                        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                        home = next((e for e in env if e.startswith(marker)), None)
                        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                        if home is None or b"python" not in cmd[0]:
                            continue
                        run = next((e for e in env if e.startswith(b"PREFECT__FLOW_RUN_ID=")), None)
                        kind = "worker" if b"worker" in cmd else "part" if run else "other"
                        if kind == "part" and home.endswith(b"host-c"):
                            kind = "coordinator"
                        proc = self.procs[pid] = Proc(home.decode().rsplit("/", 1)[1], kind)
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        proc.peak_kb = max(proc.peak_kb, int(line.split()[1]))
            self.stop.wait(0.5)

    def reset(self) -> None:
        self.procs = {pid: Proc(p.home, p.kind) for pid, p in self.procs.items() if p.kind == "worker"}

    def report(self, what: str) -> bool:
        """One line per host and kind: process count, max and median peak RSS; False if over the limit."""
        ok = True
        print(f"\npeak RSS per process ({what}; VmHWM, limit {RSS_LIMIT_MB} MB for runner-side processes):")
        by: dict[tuple[str, str], list[int]] = {}
        for proc in list(self.procs.values()):
            if proc.peak_kb:
                by.setdefault((proc.home, proc.kind), []).append(proc.peak_kb)
        for (home, kind), peaks in sorted(by.items()):
            top = max(peaks) / 1024
            runner_side = home != "host-c"
            flag = "" if not runner_side else ("  OK" if top < RSS_LIMIT_MB else "  OVER")
            ok = ok and (not runner_side or top < RSS_LIMIT_MB)
            print(f"  {home:<7} {kind:<12} {len(peaks):>4} process(es)  max {top:6.1f} MB  median {median(peaks) / 1024:6.1f} MB{flag}")
        return ok


def api(method: str, url: str, body: Any = None) -> Any:
    for attempt in range(20):
        try:
            resp = requests.request(method, url, json=body, timeout=60)
            if resp.status_code < 500:
                resp.raise_for_status()
                return resp.json()
        except requests.ConnectionError:
            pass
        time.sleep(min(5, 0.2 * 2 ** attempt))
    raise SystemExit(f"{method} {url}: server keeps failing")


def runs_named(est: Estate, prefix: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = api("POST", f"{est.api}/flow_runs/filter",
                   {"flow_runs": {"name": {"like_": prefix}}, "limit": 200, "offset": len(out), "sort": "ID_DESC"})
        out.extend(page)
        if len(page) < 200:
            return out


def nodes_text(job: int, count: int) -> str:
    lines = [json.dumps({"jobRunnerIds": list(RUNNERS), "localRunnerId": 1, "totalCount": count})]
    for i in range(count):
        lines.append(json.dumps({"resourceId": job * 100000 + i, "runnerId": RUNNERS[i % 3],
                                 "host": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", "port": 22,
                                 "nodeName": f"n{i}", "protocol": "ssh", "username": "u", "password": "p"}))
    return "\n".join(lines) + "\n"


def one_group(op: dict[str, Any]) -> dict[str, Any]:
    return {"runFlow": [{"groupNo": 1, "execStrategy": "oneShot",
                         "phases": [{"phaseName": "work", "phaseType": "runner_target", "operations": [op]}]}]}


def marks_op(marks: Path) -> dict[str, Any]:
    return {"opId": "mark_1", "opName": "mark", "opType": "runner_target", "isScript": 1, "interpreter": "bash",
            "scriptContent": f'echo "$(date +%s.%N) $AUTOEXEC_JOBID $NODE_NAME $RUNNER_ID" >> {marks}\n', "opt": {}, "desc": {}}


ECHO_OP = {"opId": "native/echo_1", "opName": "native/echo", "opType": "native", "opt": {"text": "hi"}, "desc": {}}


def host_status(est: Estate, runner: int, job: int) -> dict[str, int]:
    """status -> count of this job's nodes in runner's job dir."""
    root = JobDir.for_job(est.tmp / f"host-{runner}" / "data", str(job)).root / "status"
    counts: dict[str, int] = {}
    for path in root.glob("*/*.json"):
        status = json.loads(path.read_text())["status"]
        counts[status] = counts.get(status, 0) + 1
    return counts


def wait_final(est: Estate, run_ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(run_ids) and time.monotonic() < deadline:
        for run in api("POST", f"{est.api}/flow_runs/filter",
                       {"flow_runs": {"id": {"any_": [r for r in run_ids if r not in done]}}, "limit": 200}):
            if run["state_type"] in FINAL:
                done[run["id"]] = run
        time.sleep(1)
    return done


def check_jobs(est: Estate, jobs: dict[int, str], per_runner: int, prefix: str) -> list[str]:
    """What is wrong with these jobs' runs and job dirs (empty: nothing)."""
    problems: list[str] = []
    runs = runs_named(est, prefix)
    for job, run_id in jobs.items():
        coordinators = [r for r in runs if r["name"] == f"job-{job}"]
        parts = [r for r in runs if r["name"].startswith(f"job-{job}/")]
        if [r["id"] for r in coordinators] != [run_id]:
            problems.append(f"job {job}: {len(coordinators)} coordinator runs")
        elif coordinators[0]["state_type"] != "COMPLETED":
            problems.append(f"job {job}: coordinator {coordinators[0]['state_name']}: {coordinators[0]['state'].get('message')}")
        names = sorted(p["name"] for p in parts)
        if names != [f"job-{job}/runner-{r}/g1" for r in RUNNERS]:
            problems.append(f"job {job}: parts {names}")
        problems += [f"job {job}: {p['name']} {p['state_name']}" for p in parts if p["state_type"] != "COMPLETED"]
        for runner in RUNNERS:
            counts = host_status(est, runner, job)
            if counts != {"succeed": per_runner}:
                problems.append(f"job {job}: host-{runner} node status {counts}, expected {per_runner} succeed")
    return problems


def burst(est: Estate, dep: str, jobs: int, marks: Path) -> bool:
    ids = list(range(9700, 9700 + jobs))
    nodes = nodes_text(9700, 6)
    params = one_group(marks_op(marks))

    def trigger(job: int) -> tuple[int, str, float]:
        body = {"parameters": {"job_id": str(job), "params": params, "nodes": nodes, "first_fire": True},
                "idempotency_key": f"load-{job}"}
        sent = time.time()
        return job, api("POST", f"{est.api}/deployments/{dep}/create_flow_run", body)["id"], sent

    t0 = time.time()
    with ThreadPoolExecutor(jobs) as pool:
        first = list(pool.map(trigger, ids))
    with ThreadPoolExecutor(jobs) as pool:
        again = list(pool.map(trigger, ids))
    triggered = time.time() - t0
    run_of = {job: run for job, run, _ in first}
    sent_at = {job: sent for job, _, sent in first}
    repeated_same = all(run_of[job] == run for job, run, _ in again)
    final = wait_final(est, list(run_of.values()), 3600)
    wall = time.time() - t0
    problems = [] if repeated_same else ["a repeated trigger with the same idempotency key created a new run"]
    if len(final) < len(run_of):
        problems.append(f"{len(run_of) - len(final)} jobs not final after an hour")
    problems += check_jobs(est, run_of, 2, "job-97")
    first_op: dict[int, float] = {}
    for line in marks.read_text().splitlines() if marks.exists() else []:
        at, job, _node, _runner = line.split()
        first_op[int(job)] = min(first_op.get(int(job), float("inf")), float(at))
    latency = sorted(first_op[j] - sent_at[j] for j in first_op)
    ends = [run["end_time"] for run in final.values() if run.get("end_time")]
    print(f"\n{jobs} jobs triggered concurrently over REST (each twice, same idempotency key; 6 nodes, 2 per runner):")
    print(f"  triggers answered in {triggered:.1f} s; repeated triggers returned the same run: {repeated_same}")
    if latency:
        print(f"  trigger -> first op: min {latency[0]:.1f} s, median {median(latency):.1f} s, max {latency[-1]:.1f} s")
    print(f"  all {len(final)} jobs final {wall:.0f} s after the first trigger ({len(ends)} with an end time)")
    states: dict[str, int] = {}
    for run in final.values():
        states[run["state_type"]] = states.get(run["state_type"], 0) + 1
    print(f"  coordinator states: {states}")
    print(f"  ops run: {len(marks.read_text().splitlines()) if marks.exists() else 0} (expected {jobs * 6})")
    for problem in problems[:20]:
        print(f"  PROBLEM: {problem}")
    print(f"  lost or duplicated: {'none' if not problems else f'{len(problems)} problem(s)'}", flush=True)
    return not problems


def big_job(est: Estate, dep: str, count: int) -> bool:
    job = 9800
    body = {"parameters": {"job_id": str(job), "params": one_group(ECHO_OP), "nodes": nodes_text(job, count), "first_fire": True}}
    t0 = time.time()
    run_id = api("POST", f"{est.api}/deployments/{dep}/create_flow_run", body)["id"]
    final = wait_final(est, [run_id], 3600)
    wall = time.time() - t0
    problems = [] if final else ["not final after an hour"]
    per = {r: len(range(i, count, 3)) for i, r in enumerate(RUNNERS)}
    runs = runs_named(est, f"job-{job}")
    if [r["state_type"] for r in runs if r["name"] == f"job-{job}"] != ["COMPLETED"]:
        problems.append(f"coordinator: {[(r['state_name'], r['state'].get('message')) for r in runs if r['name'] == f'job-{job}']}")
    for runner in RUNNERS:
        counts = host_status(est, runner, job)
        if counts != {"succeed": per[runner]}:
            problems.append(f"host-{runner}: node status {counts}, expected {per[runner]} succeed")
    print(f"\none job of {count} nodes over runners 1-3 (native/echo, one oneShot group): {wall:.0f} s trigger to Completed")
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    return not problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--big-nodes", type=int, default=10000)
    ap.add_argument("--limit", type=int, default=8, help="jobs one coordinator worker runs at once")
    ap.add_argument("--repeat", type=int, default=1, help="repeats of the side-by-side")
    ap.add_argument("--lookahead", default="1,2", help="coordinator lookaheads the side-by-side compares")
    ap.add_argument("--skip-compare", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="autoexec-bench-load-"))
    t = time.perf_counter()
    est = Estate(tmp)
    print(f"set-up: PostgreSQL + Prefect server {time.perf_counter() - t:.1f} s", flush=True)
    sampler = RssSampler(tmp).start()
    ok = True
    try:
        t = time.perf_counter()
        dep = est.deploy(limit=args.limit)
        print(f"set-up: deploy + 3 runner workers (limit {3 * args.limit}) + coordinator worker (limit {args.limit}) "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        time.sleep(5)  # workers polling
        if not args.skip_compare:
            compare(est, dep, 4, args.repeat, tuple(int(n) for n in args.lookahead.split(",")))
        if args.jobs:
            sampler.reset()
            ok = burst(est, dep, args.jobs, tmp / "marks-load") and ok
            ok = sampler.report(f"{args.jobs} concurrent jobs") and ok
        if args.big_nodes:
            sampler.reset()
            ok = big_job(est, dep, args.big_nodes) and ok
            ok = sampler.report(f"the {args.big_nodes}-node job") and ok
    finally:
        sampler.stop.set()
        est.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nresult:", "every check passed" if ok else "CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
