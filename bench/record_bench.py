"""Benchmark of the Prefect record: how soon it is complete, what the recorder costs, and what the
record costs a deployment run per node.

    python bench/record_bench.py [--concurrency 1,10,50] [--nodes 100]

With its own throwaway AUTOEXEC_HOME and embedded server (started before timing):

1. ``autoexec`` exit -> complete record: one CLI job (1 and N nodes), the time from the command's
   exit until the recorder removed its spool (its flow run is final).
2. Concurrent CLI jobs (1, 10, 50 started within a second, 2 nodes each, ``sleep 2``): peak RSS of
   the recorder and of all Prefect-side processes (recorder + server), recorders seen at once, time
   from the last job's exit until every record is complete, and that every flow run is Completed.
3. Per-node cost of the record in a deployment run: the engine as a deployment's flow run runs it
   (same process, record thread fed by a queue) against the same engine with no record, N nodes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.procs import cmdline, pids_with_env  # noqa: E402


def write_job(tmp: Path, name: str, n: int, script: str) -> tuple[Path, Path]:
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "fan", "phaseType": "runner_target", "operations": [
        {"opId": "op_1", "opName": "op", "opType": "runner_target", "isScript": 1, "interpreter": "bash",
         "scriptContent": script, "opt": {}, "desc": {}}]}]}]}
    p = tmp / f"{name}-params.json"
    p.write_text(json.dumps(params))
    lines = [json.dumps({"jobRunnerIds": [1], "localRunnerId": 1, "totalCount": n})]
    for i in range(n):
        lines.append(json.dumps({"resourceId": 10000 + i, "runnerId": 1, "host": f"10.0.{i // 256}.{i % 256}",
                                 "port": 22, "nodeName": f"n{i}", "protocol": "ssh", "username": "u", "password": "p"}))
    nodes = tmp / f"{name}-nodes.jsonl"
    nodes.write_text("\n".join(lines) + "\n")
    return p, nodes


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def prefect_side_pids(home: Path) -> dict[str, list[int]]:
    """Recorders and the embedded server (and its children) serving ``home``."""
    found: dict[str, list[int]] = {"recorder": [], "server": []}
    for pid in pids_with_env(f"AUTOEXEC_HOME={home}"):
        cmd = cmdline(pid)
        if b"autoexec.flows.recorder" in cmd:
            found["recorder"].append(pid)
        elif b"prefect" in cmd and b"server" in cmd:
            found["server"].append(pid)
    return found


def spools(home: Path) -> list[Path]:
    return list((home / "prefect" / "spool").glob("*.jsonl"))


def flow_states(api: str, names: list[str]) -> dict[str, str]:
    import requests

    body = {"flow_runs": {"name": {"any_": names}}, "limit": 200}
    return {r["name"]: r["state_type"] for r in requests.post(f"{api}/flow_runs/filter", json=body, timeout=30).json()}


def exit_to_record(home: Path, env: dict[str, str], tmp: Path, n: int, job: str) -> tuple[float, float]:
    params, nodes = write_job(tmp, job, n, 'echo "hello from $NODE_HOST"\n')
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autoexec.cli.command", "-d", "-j", job, "-p", str(params), "-n", str(nodes)],
                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    exited = time.perf_counter()
    while spools(home):
        time.sleep(0.01)
    return exited - started, time.perf_counter() - exited


def concurrent(home: Path, env: dict[str, str], tmp: Path, api: str, k: int, tag: str) -> dict[str, float]:
    params, nodes = write_job(tmp, f"c{k}", 2, "sleep 2\n")
    jobs = [f"{tag}{i:03d}" for i in range(k)]
    procs = [subprocess.Popen([sys.executable, "-m", "autoexec.cli.command", "-d", "-j", job, "-p", str(params), "-n", str(nodes)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for job in jobs]
    peak_rec = peak_total = 0.0
    most_recorders = 0
    last_exit = None
    deadline = time.perf_counter() + 600
    while time.perf_counter() < deadline:
        pids = prefect_side_pids(home)
        most_recorders = max(most_recorders, len(pids["recorder"]))
        rec = sum(rss_mb(p) for p in pids["recorder"])
        peak_rec = max(peak_rec, rec)
        peak_total = max(peak_total, rec + sum(rss_mb(p) for p in pids["server"]))
        if last_exit is None and all(p.poll() is not None for p in procs):
            last_exit = time.perf_counter()
        if last_exit is not None and not spools(home):
            break
        time.sleep(0.05)
    done = time.perf_counter()
    states = flow_states(api, [f"job-{j}" for j in jobs])
    completed = sum(1 for j in jobs if states.get(f"job-{j}") == "COMPLETED")
    return {"jobs": k, "recorder_peak_mb": peak_rec, "prefect_side_peak_mb": peak_total,
            "recorders_at_once": most_recorders, "last_exit_to_complete_s": done - (last_exit or done),
            "completed": completed}


def deployment_overhead(home: Path, api: str, tmp: Path, n: int) -> dict[str, float]:
    """The engine with the record thread (as a deployment's flow run) against the engine alone."""
    os.environ["AUTOEXEC_HOME"] = str(home)
    os.environ["PREFECT_API_URL"] = api
    from autoexec.flows.api import PrefectApi
    from autoexec.flows.job_flow import RecordThread
    from autoexec.flows.record import Catalog
    from autoexec.load.loader import JobRequest, build_runtime, release_runtime
    from autoexec.engine.run import ListSink, QueueSink, Tee, run_engine

    params, nodes = write_job(tmp, "dep", n, 'echo "hello from $NODE_HOST"\n')
    api_client = PrefectApi(api)
    catalog = Catalog.ensure(api_client, with_cli_deployment=False)

    def one(job: str, record: bool) -> tuple[float, float]:
        rt = build_runtime(JobRequest(job_id=job, params_file=str(params), nodes_file=str(nodes), dev_mode=True,
                                      force=True))
        sink: QueueSink | None = None
        thread = None
        if record:
            run = api_client.call("POST", "flow_runs/", {"flow_id": catalog.job_flow_id, "name": f"job-{job}",
                                                         "state": {"type": "RUNNING", "name": "Running"}})
            sink = QueueSink()
            thread = RecordThread(sink, str(run["id"]), say=lambda _t: None).start()
        started = time.perf_counter()
        run_engine(rt, Tee(ListSink(), sink) if sink is not None else ListSink())
        engine = time.perf_counter() - started
        if thread is not None:
            thread.finish(timeout=600)
        recorded = time.perf_counter() - started
        release_runtime(rt)
        return engine, recorded

    one("dep-warm", False)
    plain = min(one(f"dep-plain-{i}", False)[0] for i in range(2))
    with_record = [one(f"dep-rec-{i}", True) for i in range(2)]
    engine = min(w[0] for w in with_record)
    recorded = min(w[1] for w in with_record)
    return {"nodes": n, "engine_alone_s": plain, "engine_with_record_s": engine, "record_complete_s": recorded,
            "overhead_per_node_ms": (engine - plain) / n * 1000, "record_per_node_ms": (recorded - plain) / n * 1000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", default="1,10,50")
    ap.add_argument("--nodes", type=int, default=100)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ae-record-bench-"))
    tmp = home / "inputs"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["AUTOEXEC_HOME"] = str(home)
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "autoexec.cli.server", "start"], env=env, capture_output=True,
                         text=True, check=True)
    api = out.stdout.split()[1]
    print(f"embedded server + recorder started in {time.perf_counter() - started:.1f} s ({api})")
    try:
        for n in (1, args.nodes):
            job_s, record_s = exit_to_record(home, env, tmp, n, f"x{n}")
            print(f"exit -> complete record, {n:>4} node(s): job {job_s:.2f} s, record complete {record_s:.2f} s after exit")
        for i, k in enumerate(int(x) for x in args.concurrency.split(",")):
            r = concurrent(home, env, tmp, api, k, f"k{i}")
            print(f"{k:>3} concurrent jobs: recorder peak {r['recorder_peak_mb']:.0f} MB, Prefect-side peak "
                  f"{r['prefect_side_peak_mb']:.0f} MB, recorders at once {r['recorders_at_once']}, records complete "
                  f"{r['last_exit_to_complete_s']:.1f} s after the last job's exit, {r['completed']}/{k} Completed")
        d = deployment_overhead(home, api, tmp, args.nodes)
        print(f"deployment run, {d['nodes']} nodes: engine alone {d['engine_alone_s']:.2f} s, with the record thread "
              f"{d['engine_with_record_s']:.2f} s ({d['overhead_per_node_ms']:.1f} ms/node), record complete "
              f"{d['record_complete_s']:.2f} s ({d['record_per_node_ms']:.1f} ms/node)")
    finally:
        subprocess.run([sys.executable, "-m", "autoexec.cli.server", "stop"], env=env, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
