"""Benchmark: one runner_target script op over N nodes, through ``autoexec`` (a real Prefect flow
run on the embedded server) and, in the same run, through a plain ThreadPoolExecutor launching the
same subprocesses with the same width. Prints wall time, per-node overhead, peak RSS and ratio.

    python bench/core_fanout.py [--nodes 10,100,1000] [--width 64] [--repeat 1]

It uses its own throwaway AUTOEXEC_HOME; the embedded Prefect server is started once before timing
(its start-up is reported separately: it is paid once per machine, not per job).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import run_cli, wait_recorded  # noqa: E402

SCRIPT = 'echo "hello from $NODE_HOST"\n'


def write_job(tmp: Path, n: int) -> tuple[Path, Path]:
    params = {"jobId": n, "roundCount": 0, "runFlow": [{"groupNo": 0, "execStrategy": "oneShot", "phases": [
        {"phaseName": "fan", "phaseType": "runner_target", "operations": [
            {"opId": "hello_1", "opName": "hello", "opType": "runner_target", "isScript": 1,
             "interpreter": "bash", "scriptContent": SCRIPT, "opt": {}, "desc": {}}]}]}]}
    p = tmp / f"params-{n}.json"
    p.write_text(json.dumps(params))
    lines = [json.dumps({"jobRunnerIds": [1], "localRunnerId": 1, "totalCount": n})]
    for i in range(n):
        lines.append(json.dumps({"resourceId": 10000 + i, "runnerId": 1, "host": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                                 "port": 22, "nodeName": f"n{i}", "protocol": "ssh", "protocolPort": 22,
                                 "username": "u", "password": "p"}))
    nodes = tmp / f"nodes-{n}.jsonl"
    nodes.write_text("\n".join(lines) + "\n")
    return p, nodes


def baseline(tmp: Path, n: int, width: int) -> float:
    script = tmp / "hello.sh"
    script.write_text(SCRIPT)
    env = dict(os.environ)

    def one(i: int) -> int:
        node_env = dict(env, NODE_HOST=f"10.0.0.{i % 256}")
        with open(tmp / f"base-{i}.log", "wb") as log:
            return subprocess.run(["bash", str(script)], env=node_env, stdout=log, stderr=subprocess.STDOUT).returncode

    started = time.perf_counter()
    with ThreadPoolExecutor(width) as pool:
        codes = list(pool.map(one, range(n)))
    assert not any(codes)
    return time.perf_counter() - started


def run_autoexec(home: Path, params: Path, nodes: Path, job: str, width: int, wait: bool = False) -> tuple[float, float]:
    """``wait``: the CLI also waits for its Prefect recorder, so the time is "until the flow run is
    complete in Prefect" and the peak RSS includes the recorder process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(AUTOEXEC_HOME=str(home), AUTOEXEC_MAX_PARALLEL=str(width))
    if wait:
        env["AUTOEXEC_PREFECT_WAIT"] = "600"
    wall, code, err, rss = run_cli([sys.executable, "-m", "autoexec.cli.command", "-d", "-j", job, "-p", str(params),
                                    "-n", str(nodes)], env)
    if code != 0:
        raise SystemExit(f"autoexec failed ({code}): {err}")
    return wall, rss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", default="10,100,1000")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--no-record-row", action="store_true",
                    help="skip the second autoexec run that waits for its recorder (for the recorder's peak RSS)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ae-bench-"))
    home = tmp / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["AUTOEXEC_HOME"] = str(home)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autoexec.cli.server", "start"], env=env, check=True, capture_output=True)
    print(f"embedded Prefect server start (once per machine): {time.perf_counter() - t0:.1f} s")
    print(f"{'nodes':>6} {'baseline s':>11} {'autoexec s':>11} {'ratio':>6} {'overhead/node ms':>17} "
          f"{'peak RSS MB':>12} | {'recorded s':>11} {'ratio':>6} {'+recorder RSS MB':>17}")
    try:
        for n in [int(x) for x in args.nodes.split(",")]:
            params, nodes = write_job(tmp, n)
            for rep in range(args.repeat):
                base = baseline(tmp, n, args.width)
                started = time.perf_counter()
                wall, rss = run_autoexec(home, params, nodes, f"{n}{rep}", args.width)
                rec = wait_recorded(home, started)
                rec_rss = float("nan")
                if not args.no_record_row:
                    _, rec_rss = run_autoexec(home, params, nodes, f"{n}{rep}9", args.width, wait=True)
                base = max(base, 1e-3)
                print(f"{n:>6} {base:>11.2f} {wall:>11.2f} {wall / base:>6.2f} {(wall - base) / n * 1000:>17.2f} "
                      f"{rss:>12.0f} | {rec:>11.2f} {rec / base:>6.2f} {rec_rss:>17.0f}", flush=True)
    finally:
        subprocess.run([sys.executable, "-m", "autoexec.cli.server", "stop"], env=env, capture_output=True)


if __name__ == "__main__":
    main()
