"""Fan-out cost of SshTransport against a plain paramiko baseline, on local throwaway sshd.

Each node = one fresh connection + auth + a trivial command (``true``), as in a phase where every
node runs one op. The baseline does only connect/auth/exec; SshTransport also creates and removes
the op root, so the ratio shows what the transport's bookkeeping costs on top of the handshake.
The "staged" row also ships what a script op ships (the remote lib dir and a one-line script).
Each mode runs in its own child process so "peak RSS" belongs to that mode alone.

    python bench/ssh_fanout.py [--nodes 50,200] [--width 16] [--sshd 4] [--auth password|key]

A last row per N runs the same work as a whole ``autoexec`` job (one target phase, one trivial
script op per SSH node: upload, run, clean up, logs/status/outputs), timed until the CLI exits; the
time until its Prefect record (written by the detached recorder) is complete is printed beside it.
"throughput" is nodes/s relative to the paramiko baseline (the issue's goal: >= 0.7 at N = 200).

Needs root and /usr/sbin/sshd (it starts its own pool via tests/sshd_pool.py).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PASSWORD_ENV = "BENCH_SSH_PASSWORD"  # never on a command line


def _baseline_node(host: str, port: int, user: str, password: str, key: str | None) -> str | None:
    import paramiko

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        auth = {"key_filename": key} if key else {"password": password}
        client.connect(host, port, username=user, timeout=30, banner_timeout=30, auth_timeout=30,
                       look_for_keys=False, allow_agent=False, **auth)
        _, stdout, _ = client.exec_command("true", timeout=30)
        status = stdout.channel.recv_exit_status()
        return None if status == 0 else f"exit {status}"
    except Exception as err:  # noqa: BLE001 - the bench counts failures, it does not stop on them
        return f"{type(err).__name__}: {err}"
    finally:
        client.close()


_SCRIPT = Path(os.environ.get("TMPDIR", "/tmp")) / f"ssh-fanout-{os.getpid()}.sh"


def _transport_node(host: str, port: int, user: str, password: str, key: str | None,
                    staged: bool = False) -> str | None:
    from autoexec.transports.base import Endpoint, RemoteOp, Timeouts, Upload
    from autoexec.transports.ssh import SshTransport

    job = "bench" + uuid.uuid4().hex[:8]
    transport = SshTransport(Endpoint(host, port, user, "" if key else password, key),
                             Timeouts(connect=30, read=30, op=60))
    try:
        uploads, argv = [], ["true"]
        if staged:  # what a script op ships: the remote lib dir and the script itself
            uploads = [Upload(REPO / "autoexec" / "plugins" / "remote" / "lib", "lib"), Upload(_SCRIPT, "t.sh", 0o700)]
            argv = ["sh", "t.sh"]
        op = RemoteOp(job_id=job, root=f"/tmp/autoexec-{job}-0-0", uploads=uploads, workdir="", argv=argv,
                      env={"AUTOEXEC_JOBID": job})
        result = transport.run(op, lambda _line: None, threading.Event())
        return None if result.ok else (result.error or f"exit {result.exit_code}")
    finally:
        transport.close()


def _child(mode: str, nodes: int, width: int, ports: list[int], user: str, key: str | None) -> None:
    import paramiko  # imported before timing, as a runner would have it loaded

    del paramiko
    if mode in ("transport", "staged"):
        import autoexec.transports.ssh  # noqa: F401
    password = os.environ.get(PASSWORD_ENV, "")
    work = {"transport": _transport_node, "baseline": _baseline_node,
            "staged": lambda *a: _transport_node(*a, staged=True)}[mode]
    _SCRIPT.write_text("true\n")
    start = time.perf_counter()
    with ThreadPoolExecutor(width) as pool:
        errors = list(pool.map(lambda i: work("127.0.0.1", ports[i % len(ports)], user, password, key),
                               range(nodes)))
    wall = time.perf_counter() - start
    _SCRIPT.unlink()
    failed = [e for e in errors if e]
    print(json.dumps({"wall": wall, "errors": len(failed), "first_error": failed[0] if failed else None,
                      "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def _run_child(mode: str, nodes: int, width: int, ports: list[int], user: str, password: str,
               key: str | None) -> dict[str, object]:
    argv = [sys.executable, __file__, "--child", mode, "--nodes", str(nodes), "--width", str(width),
            "--ports", ",".join(map(str, ports)), "--user", user]
    if key:
        argv += ["--key", key]
    env = dict(os.environ, **{PASSWORD_ENV: password})
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_ssh_job(into: Path, job: str, nodes: int, width: int, ports: list[int], user: str, password: str,
                  key: str | None) -> tuple[Path, Path]:
    """params.json and nodes file of one target phase running a trivial script op on ``nodes`` SSH
    nodes spread over ``ports`` (also used by bench/revisions.py)."""
    import math

    lines = [json.dumps({"jobRunnerIds": [1], "localRunnerId": 1, "totalCount": nodes})]
    for i in range(nodes):
        node = {"resourceId": 1000 + i, "runnerId": 1, "host": "127.0.0.1", "port": 22 + i, "nodeName": f"n{i}",
                "protocol": "ssh", "protocolPort": ports[i % len(ports)], "username": user, "password": password}
        if key:
            node["password"], node["privateKey"] = "", Path(key).read_text()
        lines.append(json.dumps(node))
    nodes_file = into / f"{job}.jsonl"
    nodes_file.write_text("\n".join(lines) + "\n")
    os.chmod(nodes_file, 0o600)
    params = {"jobId": job, "roundCount": math.ceil(nodes / width), "runFlow": [{"groupNo": 0, "phases": [
        {"phaseName": "fan", "phaseType": "target", "operations": [
            {"opId": "t_1", "opName": "t", "opType": "target", "isScript": 1, "interpreter": "sh",
             "scriptContent": "true\n"}]}]}]}
    params_file = into / f"{job}.json"
    params_file.write_text(json.dumps(params))
    return params_file, nodes_file


def _run_autoexec(nodes: int, width: int, ports: list[int], user: str, password: str, key: str | None,
                  home: Path) -> dict[str, object]:
    job = f"9{nodes}{uuid.uuid4().int % 10000}"
    params_file, nodes_file = write_ssh_job(home, job, nodes, width, ports, user, password, key)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(AUTOEXEC_HOME=str(home), AUTOEXEC_MAX_PARALLEL=str(width))
    from bench.measure import run_cli, wait_recorded

    start = time.perf_counter()
    wall, code, stderr, rss = run_cli([sys.executable, "-m", "autoexec.cli.command", "-d", "-j", job, "-p", str(params_file),
                                       "-n", str(nodes_file)], env)
    recorded = wait_recorded(home, start)
    status_dir = home / "data" / "job" / "/".join(job[i:i + 3] for i in range(0, len(job), 3)) / "status" / "fan"
    failed = sum(1 for f in status_dir.glob("*.json") if json.loads(f.read_text()).get("status") != "succeed")
    failed += nodes - len(list(status_dir.glob("*.json")))
    return {"wall": wall, "errors": failed if code == 0 or failed else nodes, "recorded": recorded,
            "first_error": stderr.strip().splitlines()[-1] if code and stderr.strip() else None,
            "maxrss_kb": rss * 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="50,200")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--sshd", type=int, default=4, help="local sshd instances to spread nodes over")
    parser.add_argument("--auth", choices=("password", "key"), default="password")
    parser.add_argument("--child", choices=("baseline", "transport", "staged"), help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    parser.add_argument("--user", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, int(args.nodes), args.width, [int(p) for p in args.ports.split(",")],
               args.user, args.key)
        return 0

    from tests.sshd_pool import start_pool

    pool = start_pool(args.sshd)
    home = pool.workdir / "autoexec-home"
    home.mkdir()
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    server_env["AUTOEXEC_HOME"] = str(home)
    subprocess.run([sys.executable, "-m", "autoexec.cli.server", "start"], env=server_env, check=True,
                   capture_output=True)
    try:
        key = str(pool.key_path("ed25519")) if args.auth == "key" else None
        print(f"{args.sshd} sshd on 127.0.0.1 {pool.ports}, auth={args.auth}, width={args.width}, "
              f"cpus={os.cpu_count()}")
        print(f"{'nodes':>5} {'mode':<10} {'wall s':>7} {'nodes/s':>8} {'throughput':>10} {'peak RSS MB':>11} errors")
        for nodes in (int(n) for n in args.nodes.split(",")):
            base = _run_child("baseline", nodes, args.width, pool.ports, pool.user, pool.password, key)
            mine = _run_child("transport", nodes, args.width, pool.ports, pool.user, pool.password, key)
            staged = _run_child("staged", nodes, args.width, pool.ports, pool.user, pool.password, key)
            job = _run_autoexec(nodes, args.width, pool.ports, pool.user, pool.password, key, home)
            for mode, row in (("paramiko", base), ("transport", mine), ("staged", staged), ("autoexec", job)):
                wall = float(row["wall"])  # type: ignore[arg-type]
                ratio = wall / float(base["wall"])  # type: ignore[arg-type]
                print(f"{nodes:>5} {mode:<10} {wall:>7.2f} {nodes / wall:>8.1f} {1 / ratio:>10.2f} "
                      f"{int(row['maxrss_kb']) / 1024:>11.1f} {row['errors']}"  # type: ignore[call-overload]
                      + (f"  first: {row['first_error']}" if row["errors"] else "")
                      + (f"  (flow run recorded in Prefect after {row['recorded']:.2f} s)" if "recorded" in row else ""))
    finally:
        subprocess.run([sys.executable, "-m", "autoexec.cli.server", "stop"], env=server_env, capture_output=True)
        pool.stop()
        import shutil

        shutil.rmtree(pool.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
