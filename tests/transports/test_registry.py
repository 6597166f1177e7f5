"""Transports are found by protocol name: a transport registered under a new name runs a target op
end to end through the shipped engine, which never names a protocol."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

from autoexec.transports.base import (Endpoint, RemoteOp, RemoteResult, Timeouts, TransportTraits, fetch_plan,
                                      local_fetch_path)
from autoexec.transports.decoding import LineSplitter
from autoexec.transports.reap import Reaped
from autoexec.transports.registry import TransportSpec, default_transports
from tests.fixtures_core import JobFiles, run_runtime, script_op


class LoopbackTransport:
    """Test-only: "the host" is a directory on this machine; ops run as local processes."""

    opened: list[LoopbackTransport] = []

    def __init__(self, endpoint: Endpoint, timeouts: Timeouts, charsets: tuple[str, ...]) -> None:
        self.endpoint = endpoint
        self.charsets = charsets
        self.roots: list[str] = []
        self.closed = False
        LoopbackTransport.opened.append(self)

    def run(self, op: RemoteOp, on_line, cancel: threading.Event) -> RemoteResult:  # type: ignore[no-untyped-def]
        root = Path(op.root)
        self.roots.append(op.root)
        for upload in op.uploads:
            dest = root / upload.remote_rel
            if upload.local.is_dir():
                shutil.copytree(upload.local, dest, dirs_exist_ok=True)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(upload.local, dest)
                if upload.mode is not None:
                    dest.chmod(upload.mode)
        workdir = root / op.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        for name in op.create_empty:
            (workdir / name).write_bytes(b"")
        done = subprocess.run(op.argv, cwd=workdir, env={**os.environ, **op.env}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=op.timeout, check=False)
        splitter = LineSplitter(self.charsets)
        for line in splitter.feed(done.stdout) + splitter.flush():
            on_line(line)
        result = RemoteResult(exit_code=done.returncode)
        if done.returncode == 0 and op.fetch_dir is not None:
            for wanted in (list(op.fetch), None):
                for rel in wanted if wanted is not None else fetch_plan(op, result.fetched):
                    if (workdir / rel).is_file():
                        local = local_fetch_path(op.fetch_dir, rel)
                        local.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy(workdir / rel, local)
                        result.fetched[rel] = local
        shutil.rmtree(root, ignore_errors=True)
        return result

    def kill_job(self, job_id: str) -> str | None:
        return None

    def reap(self, job_id: str, node_key: str) -> Reaped:
        return Reaped()

    def close(self) -> None:
        self.closed = True


def test_a_transport_registered_under_a_new_protocol_runs_a_target_op(jobs: JobFiles, tmp_path: Path) -> None:
    hosts = tmp_path / "loopback-host"
    traits = TransportTraits(temp_root=str(hosts), needs_secret=False, op_env=(("LOOPBACK_TERM", "yes"),))
    script = ('echo "ran as $LOOPBACK_TERM job=$AUTOEXEC_JOBID in $(basename "$(dirname "$PWD")")"\n'
              'printf \'{"said": "%s"}\' "$1" > output.json\n')
    op = script_op("hello_1", script, "target", output={"said": {"type": "text"}},
                   arg=[{"type": "text", "value": "two words"}])
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "remote", "phaseType": "target",
                                                    "operations": [op]}]}]}
    node = {"resourceId": 7, "runnerId": 1, "host": "10.9.9.9", "port": 4, "nodeName": "lb", "protocol": "loopback",
            "protocolPort": 4, "username": "u", "password": ""}
    nodes = "\n".join(json.dumps(x) for x in [{"jobRunnerIds": [1], "localRunnerId": 1, "totalCount": 1}, node]) + "\n"
    rt = jobs.runtime("3901", params, nodes)
    assert "loopback" not in rt.transports
    LoopbackTransport.opened.clear()
    rt = dataclasses.replace(rt, transports=default_transports().with_entry("loopback", TransportSpec(traits, LoopbackTransport)))
    outcome = run_runtime(rt)
    rt.console.close()
    log = rt.jobdir.node_log("remote", "10.9.9.9-4-7").read_text(encoding="utf-8")
    assert outcome.status == "succeed", log
    assert "ran as yes job=3901 in loopback-host" in log
    assert json.loads(rt.jobdir.node_output("10.9.9.9-4-7").read_text())["hello_1"] == {"said": "two words"}
    [transport] = LoopbackTransport.opened
    assert transport.roots == [f"{hosts}/autoexec-3901-7-1"] and transport.closed
    assert transport.endpoint.host == "10.9.9.9" and transport.charsets == rt.config.output_charsets


def test_an_unregistered_protocol_fails_the_target_op_with_one_line(jobs: JobFiles) -> None:
    op = script_op("hello_1", "echo never\n", "target")
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "remote", "phaseType": "target",
                                                    "operations": [op]}]}]}
    node = {"resourceId": 8, "runnerId": 1, "host": "10.9.9.8", "port": 4, "protocol": "telnet",
            "protocolPort": 4, "username": "u", "password": "pw"}
    nodes = "\n".join(json.dumps(x) for x in [{"jobRunnerIds": [1], "localRunnerId": 1, "totalCount": 1}, node]) + "\n"
    rt, outcome = jobs.run("3902", params, nodes)
    log = rt.jobdir.node_log("remote", "10.9.9.8-4-8").read_text(encoding="utf-8")
    assert outcome.status == "failed"
    assert "protocol 'telnet' cannot run target operation hello_1 (needs ssh or tagent)" in log
