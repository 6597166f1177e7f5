"""Tagent faults fail only the node they hit, within its timeout + 1 s, with one clear line: the
agent killed mid-op, a port that swallows connections, a wrong credential."""
from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from autoexec.transports.base import Endpoint, RemoteResult, Timeouts
from autoexec.transports.tagent import TagentTransport
from tests.fixtures_core import JobFiles, script_op
from tests.integration.test_tagent_transport import make_op
from tests.tagent_agent import TagentTestAgent
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TIMEOUTS = Timeouts(connect=2.0, read=10.0, write=2.0, op=6.0)


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts connections and never says a word (a hung agent, a swallowing firewall)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


@pytest.fixture
def second_agent(tmp_path: Path) -> Iterator[TagentTestAgent]:
    agent_tmp = tmp_path / "agent2-tmp"
    agent_tmp.mkdir()
    agent = TagentTestAgent(password="Other-Pass-456", tmpdir=str(agent_tmp)).start()
    try:
        yield agent
    finally:
        agent.stop()


def _timed(transport: TagentTransport, op) -> tuple[RemoteResult, list[str], float]:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    started = time.monotonic()
    result = transport.run(op, lines.append, threading.Event())
    return result, lines, time.monotonic() - started


def _one_clear_line(result: RemoteResult, *words: str) -> None:
    assert result.exit_code is None and result.error, result
    assert "\n" not in result.error and all(word in result.error for word in words), result.error


def test_agent_killed_mid_op_fails_that_node_only(tagent_agent: TagentTestAgent, second_agent: TagentTestAgent,
                                                  tmp_path: Path) -> None:
    victim = TagentTransport(Endpoint("127.0.0.1", tagent_agent.port, password=tagent_agent.password), TIMEOUTS)
    healthy = TagentTransport(Endpoint("127.0.0.1", second_agent.port, password=second_agent.password), TIMEOUTS)
    op = make_op(tmp_path, ["sh", "-c", "echo started; sleep 3; echo finished"])
    with ThreadPoolExecutor(2) as pool:
        bystander = pool.submit(_timed, healthy, make_op(tmp_path, ["sh", "-c", "sleep 2; echo fine"]))
        running = pool.submit(_timed, victim, op)
        wait_until(lambda: tagent_agent.requests, 60, "the op to reach the agent")
        wait_until(lambda: len(tagent_agent.requests) >= 2, 10, required=False)
        time.sleep(0.5)  # the command is running
        killed_at = time.monotonic()
        tagent_agent.kill()
        result, lines, _took = running.result(timeout=20)
        ended_after = time.monotonic() - killed_at
        other, other_lines, _ = bystander.result(timeout=20)
    _one_clear_line(result, "execute failed", f"127.0.0.1:{tagent_agent.port}")
    assert lines == ["started"] and ended_after < TIMEOUTS.op + 1
    assert other.ok and other_lines == ["fine"]


def test_black_holed_port_fails_within_the_connect_timeout(black_hole: int, tagent_agent: TagentTestAgent,
                                                           tmp_path: Path) -> None:
    lost = TagentTransport(Endpoint("127.0.0.1", black_hole, password="whatever"), TIMEOUTS)
    healthy = TagentTransport(Endpoint("127.0.0.1", tagent_agent.port, password=tagent_agent.password), TIMEOUTS)
    with ThreadPoolExecutor(2) as pool:
        stuck = pool.submit(_timed, lost, make_op(tmp_path, ["true"]))
        fine = pool.submit(_timed, healthy, make_op(tmp_path, ["sh", "-c", "echo fine"]))
        result, _lines, took = stuck.result(timeout=30)
        other, other_lines, _ = fine.result(timeout=30)
    _one_clear_line(result, f"127.0.0.1:{black_hole}", "handshake", "connect timeout")
    assert took < TIMEOUTS.connect + 1
    assert other.ok and other_lines == ["fine"]


def test_wrong_credential_fails_at_once(tagent_agent: TagentTestAgent, tmp_path: Path) -> None:
    wrong = TagentTransport(Endpoint("127.0.0.1", tagent_agent.port, password="not-it"), TIMEOUTS)
    result, _lines, took = _timed(wrong, make_op(tmp_path, ["true"]))
    _one_clear_line(result, "authentication", "credential rejected")
    assert "not-it" not in result.error and took < TIMEOUTS.connect + 1  # type: ignore[operator]


def test_faulty_tagent_nodes_fail_alone_in_a_job(jobs: JobFiles, tagent_agent: TagentTestAgent, black_hole: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOEXEC_CONNECT_TIMEOUT", "3")  # rexec.connectTimeout
    def node(rid: int, port: int, password: str) -> dict:
        return {"resourceId": rid, "runnerId": 1, "host": "127.0.0.1", "port": port, "nodeName": f"t{rid}",
                "protocol": "tagent", "protocolPort": port, "username": "root", "password": password}

    nodes = [node(71, tagent_agent.port, tagent_agent.password), node(72, black_hole, "x"),
             node(73, tagent_agent.port, "wrong-credential")]
    header = {"jobRunnerIds": [1], "localRunnerId": 1, "totalCount": len(nodes)}
    params = {"runFlow": [{"groupNo": 0, "phases": [
        {"phaseName": "remote", "phaseType": "target", "operations": [script_op("hello_1", "echo hello\n", "target")]}]}]}
    started = time.monotonic()
    rt, outcome = jobs.run("701", params, "\n".join(json.dumps(x) for x in [header, *nodes]) + "\n")
    assert outcome.status == "failed"
    status = {n["resourceId"]: json.loads(rt.jobdir.node_status("remote", f"127.0.0.1-{n['port']}-{n['resourceId']}")
                                          .read_text())["status"] for n in nodes}
    assert status == {71: "succeed", 72: "failed", 73: "failed"}
    logs = {n["resourceId"]: rt.jobdir.node_log("remote", f"127.0.0.1-{n['port']}-{n['resourceId']}").read_text()
            for n in nodes}
    assert "hello" in logs[71]
    assert [line for line in logs[72].splitlines() if "ERROR:" in line and "handshake" in line], logs[72]
    assert [line for line in logs[73].splitlines() if "ERROR:" in line and "credential rejected" in line], logs[73]
    assert "wrong-credential" not in logs[73]
    assert time.monotonic() - started < 3 + 1 + 10  # the black hole's connect timeout, plus the job's own


def test_unusable_tmpdir_is_one_line_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the agent's TMPDIR should be")
    agent = TagentTestAgent(password="Pass-789", tmpdir=str(blocker / "tmp")).start()
    try:
        transport = TagentTransport(Endpoint("127.0.0.1", agent.port, password="Pass-789"), TIMEOUTS)
        result, _lines, _took = _timed(transport, make_op(tmp_path, ["true"]))
    finally:
        agent.stop()
    _one_clear_line(result, "upload to $TMPDIR/autoexec-", "failed", str(blocker), "Not a directory")
