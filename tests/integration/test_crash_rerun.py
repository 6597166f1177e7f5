"""A runner SIGKILLed again and again, each time followed by a plain re-run: no op ever runs twice
at once on a node, and an op recorded as succeeded never runs again.

The job has a runner phase, an SSH + Tagent phase (oneShot) and a grayScale group over the same
nodes, all against real peers (sshd on loopback, the Tagent test agent). Every tool appends
``start``/``tick``/``end`` records (execution id, wall time) to a per-node ledger on the target
every 50 ms, so an old execution still alive when a new one starts leaves a record after the new
start. Kill moments are drawn from a seeded generator; the runner's Prefect recorder is left out
of the child (each of twenty recorders would import Prefect, CPU that has nothing to do with what
is tested). A longer loop: ``AUTOEXEC_TEST_KILLS=200 AUTOEXEC_TEST_KILL_SEED=<n>``.
"""
from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_core import cli_env, script_op
from tests.procs import pids_with_env
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

KILLS = int(os.environ.get("AUTOEXEC_TEST_KILLS", "20"))
SEED = int(os.environ.get("AUTOEXEC_TEST_KILL_SEED", "12"))

RUNNER = "import sys; from autoexec.cli.command import main; sys.exit(main(sys.argv[1:]))"


def _tool(ledger: Path, name: str, op: str, ticks: int) -> str:
    where = f'"{ledger}/{name}.log"' if name else f'"{ledger}/$NODE_NAME.log"'
    return (f'L={where}; x="$$-$(date +%N)"\n'
            f'echo "{op} start $x $(date +%s.%N)" >> "$L"\n'
            f'i=0; while [ $i -lt {ticks} ]; do sleep 0.05; echo "{op} tick $x $(date +%s.%N)" >> "$L"; i=$((i+1)); done\n'
            f'echo "{op} end $x $(date +%s.%N)" >> "$L"\n')


OPS_PER_PHASE = max(2, KILLS // 10)
"""A longer loop gets a longer job, so the kills keep landing in it."""
REMOTE_OPS = tuple(f"r{i}_1" for i in range(OPS_PER_PHASE))
GRAY_OPS = tuple(f"g{i}_1" for i in range(OPS_PER_PHASE))


def _params(ledger: Path) -> dict[str, Any]:
    def target(op: str) -> dict[str, Any]:
        # sh, not bash: a root login bash runs ~/.bashrc here (pyenv rehash, whose lock file a kill
        # would leave behind for every later login shell of the machine)
        return script_op(op, _tool(ledger, "", op, 16), "target", interpreter="sh")

    return {"runFlow": [
        {"groupNo": 0, "execStrategy": "oneShot", "phases": [
            {"phaseName": "local", "phaseType": "runner",
             "operations": [script_op("loc_1", _tool(ledger, "runner", "loc_1", 10), "runner")]},
            {"phaseName": "remote", "phaseType": "target", "operations": [target(op) for op in REMOTE_OPS]}]},
        {"groupNo": 1, "execStrategy": "grayScale", "roundCount": 3, "phases": [
            {"phaseName": "gray", "phaseType": "target", "operations": [target(op) for op in GRAY_OPS]}]}]}


def _nodes(sshd_pool: Any, agent: Any) -> list[dict[str, Any]]:
    ssh = [{"resourceId": rid, "runnerId": 1, "host": "127.0.0.1", "port": port, "nodeName": f"n{rid}",
            "protocol": "ssh", "protocolPort": port, "username": sshd_pool.user, "password": sshd_pool.password}
           for rid, port in ((11, sshd_pool.ports[0]), (12, sshd_pool.ports[1]))]
    return ssh + [{"resourceId": 13, "runnerId": 1, "host": "127.0.0.1", "port": agent.port, "nodeName": "n13",
                   "protocol": "tagent", "protocolPort": agent.port, "username": "root", "password": agent.password}]


def _starts(ledger: Path) -> list[str]:
    """The ops of every start record so far, in file order per node."""
    return [line.split()[0] for path in sorted(ledger.glob("*.log"))
            for line in path.read_text().splitlines() if line.split()[1:2] == ["start"]]


def _wait_for_a_start(ledger: Path, known: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Until an op start beyond the ``known`` ones is recorded, or the job has ended; after
    ``timeout`` the caller goes on regardless."""
    wait_until(lambda: len(_starts(ledger)) > known or proc.poll() is not None, timeout,
               "an op to start or the job to end", interval=0.02, required=False)


class Execution:
    def __init__(self, start: float) -> None:
        self.start = start
        self.last = start
        self.ended = False


def _ledger(ledger: Path) -> dict[tuple[str, str], dict[str, Execution]]:
    """(node, op) -> execution id -> its span."""
    runs: dict[tuple[str, str], dict[str, Execution]] = defaultdict(dict)
    for path in ledger.glob("*.log"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 4:
                continue  # a record cut short by a kill
            op, event, ident, stamp = parts
            execs = runs[(path.stem, op)]
            if event == "start":
                execs[ident] = Execution(float(stamp))
            elif ident in execs:
                execs[ident].last = max(execs[ident].last, float(stamp))
                execs[ident].ended = execs[ident].ended or event == "end"
    return runs


def _recorded_succeed(job_dir: Path) -> set[tuple[str, str]]:
    """(node name, op) recorded ``succeed`` in the status files right now."""
    names = {"local-0-0": "runner"}
    done = set()
    for path in (job_dir / "status").rglob("*.json"):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        rid = path.stem.rsplit("-", 1)[-1]
        node = names.get(path.stem, f"n{rid}")
        done |= {(node, k) for k, v in data.items() if k.endswith("_1") and v == "succeed"}
    return done


def _job_processes(job_id: str) -> list[int]:
    return pids_with_env(f"AUTOEXEC_JOBID={job_id}")


def _clean_up(job_id: str, ledger: Path) -> None:
    """Whatever a failed test left of the job is killed; the ledger goes."""
    for pid in _job_processes(job_id):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    shutil.rmtree(ledger, ignore_errors=True)


def test_sigkill_loop_runs_every_op_once_and_never_overlapping(sshd_pool, tagent_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    job_id = str(7000 + random.Random().randrange(1000))
    ledger = Path(f"/tmp/ae-ledger-{uuid.uuid4().hex[:12]}")  # the SSH test user cannot write to tmp_path
    ledger.mkdir(mode=0o777)
    ledger.chmod(0o777)
    params, nodes = tmp_path / "params.json", tmp_path / "nodes.jsonl"
    params.write_text(json.dumps(_params(ledger)))
    header = {"jobRunnerIds": [1], "localRunnerId": 1, "totalCount": 3}
    nodes.write_text("\n".join(json.dumps(x) for x in [header, *_nodes(sshd_pool, tagent_agent)]) + "\n")
    env = dict(cli_env(home), PREFECT_API_URL="http://127.0.0.1:9/api", AUTOEXEC_OUTBOX_FLUSH_SECS="0",
               AUTOEXEC_PREFECT_RECORD="0")  # no recorder: only the job's own files are checked
    job_dir = home / "data" / "job" / "/".join(job_id[i:i + 3] for i in range(0, len(job_id), 3))
    rng = random.Random(SEED)
    succeeded_starts: dict[tuple[str, str], int] = {}
    kills = 0
    try:
        inputs = ["--paramsfile", str(params), "--nodesfile", str(nodes)]  # copied in only when changed
        gray_kills = 0
        while (kills < KILLS or gray_kills < 3) and kills < 2 * KILLS:  # some must hit grayScale rounds
            proc = subprocess.Popen([sys.executable, "-c", RUNNER, "-d", "-j", job_id, *inputs,
                                     *([] if kills else ["--firstfire"])],
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            # One kill in four at any moment from the launch (loading, reaping, starting); the others
            # a random while after this run started an op, so that every run makes some progress
            # however slow the machine is.
            started = _starts(ledger)
            if rng.random() < 0.25:
                time.sleep(rng.uniform(0.0, 1.0))
            else:
                _wait_for_a_start(ledger, len(started), proc)
                time.sleep(rng.uniform(0.05, 1.8))
            if proc.poll() is not None:  # the job got to its end before this kill
                assert proc.returncode == 0, proc.stderr.read().decode()  # type: ignore[union-attr]
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            kills += 1
            gray_kills += any(op in GRAY_OPS for op in Counter(_starts(ledger)) - Counter(started))
            runs = _ledger(ledger)
            for key in _recorded_succeed(job_dir):
                succeeded_starts.setdefault(key, len(runs.get(key, {})))
        final = subprocess.run([sys.executable, "-c", RUNNER, "-d", "-j", job_id, *inputs], env=env,
                               capture_output=True, text=True, timeout=180)
        assert final.returncode == 0, final.stderr + (job_dir / "log/console.txt").read_text()
        runs = _ledger(ledger)
        expected = {("runner", "loc_1")} | {(f"n{rid}", op) for rid in (11, 12, 13)
                                           for op in (*REMOTE_OPS, *GRAY_OPS)}
        assert set(runs) == expected
        reaped = sum(p.read_text().count("waited until they were gone")
                     for p in (job_dir / "log").rglob("*.txt"))
        doubled = []
        for key, execs in sorted(runs.items()):
            spans = sorted(execs.values(), key=lambda e: e.start)
            assert any(e.ended for e in spans), f"{key} never completed"
            for before, after in itertools.pairwise(spans):
                assert after.start > before.last, (
                    f"{key}: an execution started at {after.start:.3f} while the one started at "
                    f"{before.start:.3f} was still running (last record {before.last:.3f})")
            if key in succeeded_starts:
                assert len(execs) == succeeded_starts[key], f"{key} ran again after it was recorded succeed"
            if sum(e.ended for e in spans) > 1:
                doubled.append(key)
        print(f"{kills} kills ({gray_kills} in the grayScale group), {reaped} reaps that killed a survivor, ops completed again because their "
              f"first completion was not recorded before the kill: {doubled}")
        assert kills >= KILLS and gray_kills >= 3
        assert not _job_processes(job_id), "processes of the job outlived its end"
    finally:
        _clean_up(job_id, ledger)


def test_rerun_after_a_crash_kills_what_the_old_op_left_on_ssh_and_tagent_hosts(sshd_pool, tagent_agent,  # type: ignore[no-untyped-def]
                                                                                tmp_path: Path) -> None:
    """The first execution of the op hangs and leaves a detached daemon (its own session: neither
    the SSH session's end nor the Tagent agent's kill of the command reaches it). The runner is
    SIGKILLed; the plain re-run kills all of it, waits, says so in the node log, then runs the op."""
    home, job_id = tmp_path / "home", "7991"
    ledger = Path(f"/tmp/ae-ledger-{uuid.uuid4().hex[:12]}")
    ledger.mkdir(mode=0o777)
    ledger.chmod(0o777)
    tool = (f'L="{ledger}/$NODE_NAME.log"\n'
            'if [ ! -f "$L.again" ]; then touch "$L.again"\n'
            '  setsid sh -c \'while :; do echo "daemon x x $(date +%s.%N)" >> "$0"; sleep 0.05; done\' "$L" &\n'
            '  echo "op start x $(date +%s.%N)" >> "$L"; sleep 300; fi\n'
            'echo "op rerun x $(date +%s.%N)" >> "$L"\n')
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "remote", "phaseType": "target", "operations": [
        script_op("hang_1", tool, "target", interpreter="sh")]}]}]}
    params_file, nodes_file = tmp_path / "params.json", tmp_path / "nodes.jsonl"
    params_file.write_text(json.dumps(params))
    nodes = [n for n in _nodes(sshd_pool, tagent_agent) if n["resourceId"] in (11, 13)]
    header = {"jobRunnerIds": [1], "localRunnerId": 1, "totalCount": 2}
    nodes_file.write_text("\n".join(json.dumps(x) for x in [header, *nodes]) + "\n")
    env = dict(cli_env(home), PREFECT_API_URL="http://127.0.0.1:9/api", AUTOEXEC_PREFECT_RECORD="0")
    argv = [sys.executable, "-c", RUNNER, "-d", "-j", job_id, "-p", str(params_file), "-n", str(nodes_file)]
    job_dir = home / "data" / "job" / "799" / "1"
    try:
        first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_for_a_start(ledger, 1, first)
        assert len(_starts(ledger)) == 2, first.stderr.read().decode() if first.poll() is not None else "no start"  # type: ignore[union-attr]
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        time.sleep(0.3)
        assert _job_processes(job_id), "nothing of the op survived the runner: nothing to test"
        rerun = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr + (job_dir / "log/console.txt").read_text()
        for name, node in (("n11", nodes[0]), ("n13", nodes[1])):
            log = (job_dir / "log" / "remote" / f"127.0.0.1-{node['port']}-{node['resourceId']}.txt").read_text()
            assert "WARN: Operation hang_1 of the previous run of this job was still running on 127.0.0.1: killed" in log
            assert log.index("waited until they were gone") < log.index("------START--[hang_1]")
            records = [line.split() for line in (ledger / f"{name}.log").read_text().splitlines()]
            rerun_at = next(float(r[3]) for r in records if r[1] == "rerun")
            assert all(float(r[3]) < rerun_at for r in records if r[0] == "daemon"), f"{name}: the daemon outlived the reap"
        assert not _job_processes(job_id)
    finally:
        _clean_up(job_id, ledger)
