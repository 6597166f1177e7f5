"""The machine's recorder: one per AUTOEXEC_HOME however many jobs start, nothing lost while the
Prefect API is away, a prompt and lossless SIGTERM."""
from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import pytest

from autoexec.flows.api import PrefectApi
from autoexec.flows.recorder import pid_path, recorder_running, stop_recorder
from tests.fixtures_core import cli_env, nodes_lines, script_op
from tests.prefect_record import api_url, flow_runs, job_record
from tests.procs import cmdline, is_zombie, pids_with_env
from tests.waiting import wait_until
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


def _recorders(home: Path) -> list[int]:
    """Recorder processes serving ``home`` (by their command line and environment)."""
    return [pid for pid in pids_with_env(f"AUTOEXEC_HOME={home}")
            if b"autoexec.flows.recorder" in cmdline(pid) and not is_zombie(pid)]


@pytest.fixture
def proxied(prefect_home: Path, tmp_path: Path) -> Iterator[tuple[Path, TcpProxy, dict[str, str]]]:
    """A fresh AUTOEXEC_HOME whose jobs and recorder reach the shared server through a proxy."""
    target = urlparse(api_url(prefect_home))
    proxy = TcpProxy((target.hostname or "127.0.0.1", int(target.port or 80)))
    home = tmp_path / "home"
    home.mkdir()
    env = dict(cli_env(home), PREFECT_API_URL=f"http://127.0.0.1:{proxy.port}/api", AUTOEXEC_RECORDER_IDLE_SECS="60")
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"runFlow": [{"groupNo": 0, "phases": [
        {"phaseName": "p", "phaseType": "runner_target", "operations": [script_op("ok_1", "echo hi", "runner_target")]}]}]}))
    (tmp_path / "nodes.jsonl").write_text(nodes_lines(2))
    try:
        yield home, proxy, env
    finally:
        stop_recorder(home)
        proxy.down()
        if (home / "logs" / "prefect-recorder.log").exists():
            print((home / "logs" / "prefect-recorder.log").read_text()[-4000:])


def _job(env: dict[str, str], tmp: Path, job: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "autoexec.cli.command", "-d", "-j", job, "-p", str(tmp / "params.json"),
                             "-n", str(tmp / "nodes.jsonl")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def test_a_burst_of_jobs_leaves_one_recorder_and_every_record_complete(proxied: Any, tmp_path: Path,
                                                                       prefect_home: Path) -> None:
    home, proxy, env = proxied
    proxy.up()
    jobs = [f"75{i:02d}" for i in range(8)]
    procs = [_job(env, tmp_path, job) for job in jobs]
    most = 0
    while any(p.poll() is None for p in procs):
        most = max(most, len(_recorders(home)))
        time.sleep(0.05)
    assert [p.returncode for p in procs] == [0] * len(jobs)
    wait_until(lambda: len(_recorders(home)) == 1, 10, "one recorder")
    for job in jobs:
        rec = job_record(prefect_home, job)
        assert rec["run"]["state_type"] == "COMPLETED", job
        assert [len(t) for t in rec["tasks"].values()] == [2], job
    wait_until(lambda: not list((home / "prefect" / "spool").iterdir()), 30, "spools removed")
    assert len(_recorders(home)) == 1 and most <= 2  # a second one racing the first exits at once


def test_nothing_is_lost_while_the_api_is_down_and_sigterm_keeps_the_spool(proxied: Any, tmp_path: Path,
                                                                          prefect_home: Path) -> None:
    home, proxy, env = proxied  # the proxy starts down: the API is unreachable
    first = _job(env, tmp_path, "7601")
    assert first.wait(60) == 0, first.stderr.read() if first.stderr else ""
    console = home / "data/job/760/1/log/console.txt"
    wait_until(lambda: "WARN: Prefect record of this run delayed" in console.read_text(), 30, "console warning")
    spools = list((home / "prefect" / "spool").glob("7601-*.jsonl"))
    assert len(spools) == 1
    pid = int(pid_path(home).read_text())
    stopped_at = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not recorder_running(home), 5, "recorder gone within 5 s")
    assert time.monotonic() - stopped_at < 5
    assert spools[0].exists() and '"event":"job_end"' in spools[0].read_text()  # kept for the next recorder

    proxy.up()  # the API is back: the next job's recorder replays what the first one could not write
    second = _job(env, tmp_path, "7602")
    assert second.wait(60) == 0
    for job in ("7601", "7602"):
        rec = job_record(prefect_home, job)
        assert rec["run"]["state_type"] == "COMPLETED"
        assert [sorted(t["state_type"] for t in tasks.values()) for tasks in rec["tasks"].values()] == \
            [["COMPLETED", "COMPLETED"]]
    assert len([r for r in flow_runs(prefect_home, "job-7601") if r["name"] == "job-7601"]) == 1
    wait_until(lambda: not list((home / "prefect" / "spool").iterdir()), 30, "spools removed")


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Answers 503 twice, then 201: what a busy SQLite-backed Prefect server does under fan-out."""

    calls: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.calls.append(self.path)
        busy = len(self.calls) <= 2
        body = b'{"detail":"busy"}' if busy else b'{"id":"x"}'
        self.send_response(503 if busy else 201)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_busy_server_is_retried_until_the_call_lands() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    reports: list[str] = []
    try:
        api = PrefectApi(f"http://127.0.0.1:{server.server_port}/api", on_retry=reports.append)
        assert api.call("POST", "flow_runs/", {"name": "x"}) == {"id": "x"}
        assert len(_Flaky.calls) == 3 and len(reports) == 2 and "HTTP 503" in reports[0]
    finally:
        server.shutdown()
        server.server_close()
