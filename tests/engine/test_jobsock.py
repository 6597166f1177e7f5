"""The job socket (:mod:`autoexec.engine.jobsock`): through whole jobs (tools setting job variables, the
cross-runner grayScale barrier, wait-for-input), and on its own with a real client socket."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from autoexec.engine.jobsock import JobSocket
from autoexec.job.runlinks import RunLinks
from autoexec.job.runtime import JobRuntime
from tests.fixtures_core import JobFiles, nodes_lines, run_runtime, script_op
from tests.waiting import wait_until

SEND = ('import json, os, socket\n'
        's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n'
        's.sendto(json.dumps({"action": "setEnv", "items": {"FROM_TOOL": "42"}}).encode(), os.environ["AUTOEXEC_JOB_SOCK"])\n')


def test_tool_sets_a_job_variable_seen_by_later_phases(jobs: JobFiles) -> None:
    params = {"runFlow": [
        {"groupNo": 0, "phases": [{"phaseName": "a", "phaseType": "runner",
                                   "operations": [script_op("send_1", SEND, interpreter="python")]}]},
        {"groupNo": 1, "phases": [{"phaseName": "b", "phaseType": "runner",
                                   "operations": [script_op("show_1", 'echo "value=$FROM_TOOL"\n')]}]}]}
    rt, outcome = jobs.run("401", params)
    assert outcome.status == "succeed"
    assert "value=42" in rt.jobdir.node_log("b", "local-0-0").read_text()
    assert not list(rt.jobdir.root.glob("job*.sock")), "the socket is removed at the end"


def test_multi_runner_gray_scale_waits_for_the_console_go_ahead(jobs: JobFiles) -> None:
    header_nodes = nodes_lines(4).splitlines()
    header = json.loads(header_nodes[0])
    header["jobRunnerIds"] = [1, 2]
    nodes = "\n".join([json.dumps(header), *header_nodes[1:]]) + "\n"
    trace = jobs.tmp / "trace"
    params = {"runFlow": [{"groupNo": 0, "execStrategy": "grayScale", "roundCount": 2, "phases": [
        {"phaseName": "p", "phaseType": "runner_target",
         "operations": [script_op("rec_1", f'echo "$NODE_NAME $(date +%s.%N)" >> {trace}\n', "runner_target")]}]}]}
    rt = jobs.runtime("402", params, nodes, dev_mode=False)
    released: list[float] = []

    def console() -> None:
        """Plays the console: lets each round go on 0.3 s after the runner reported it ended."""
        done = 0
        deadline = time.monotonic() + 20
        while done < 2 and time.monotonic() < deadline:
            ended = [c for c in rt.notifier.calls if c[0] == "round_ended"]
            if len(ended) > done:
                time.sleep(0.3)
                released.append(time.time())
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                    s.sendto(json.dumps({"action": "informRoundContinue", "phaseName": "p",
                                         "roundNo": ended[done][1]["round_no"]}).encode(),
                             rt.env["AUTOEXEC_JOB_SOCK"])
                done += 1
            time.sleep(0.02)

    threading.Thread(target=console, daemon=True).start()
    outcome = run_runtime(rt)
    assert outcome.status == "succeed"
    starts = {line.split()[0]: float(line.split()[1]) for line in trace.read_text().splitlines()}
    assert max(starts["n1"], starts["n2"]) < released[0] < min(starts["n3"], starts["n4"])


def test_round_end_is_told_again_until_the_go_ahead(jobs: JobFiles, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import autoexec.engine.groups as groups

    monkeypatch.setattr(groups, "ROUND_RESEND_SECS", 0.2)
    lines = nodes_lines(2).splitlines()
    header = dict(json.loads(lines[0]), jobRunnerIds=[1, 2])
    params = {"runFlow": [{"groupNo": 0, "execStrategy": "grayScale", "roundCount": 1, "phases": [
        {"phaseName": "p", "phaseType": "runner_target", "operations": [script_op("e_1", "true\n", "runner_target")]}]}]}
    rt = jobs.runtime("403", params, "\n".join([json.dumps(header), *lines[1:]]) + "\n", dev_mode=False)

    def release_late() -> None:
        deadline = time.monotonic() + 10
        while not [c for c in rt.notifier.calls if c[0] == "round_ended"] and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.7)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(json.dumps({"action": "informRoundContinue", "phaseName": "p", "roundNo": 1}).encode(),
                     rt.env["AUTOEXEC_JOB_SOCK"])

    threading.Thread(target=release_late, daemon=True).start()
    outcome = run_runtime(rt)
    assert outcome.status == "succeed"
    told = [c for c in rt.notifier.calls if c[0] == "round_ended"]
    assert 3 <= len(told) <= 6 and all(c[1]["round_no"] == 1 for c in told)


WAIT_TOOL = ('import json, os, socket, time\n'
             's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n'
             'def send(**kw):\n'
             '    s.sendto(json.dumps(dict(action="informNodeWaitInput", phaseName="ask", resourceId=101, **kw)).encode(),\n'
             '             os.environ["AUTOEXEC_JOB_SOCK"])\n'
             'send(interact={"title": "go on?", "opType": "button", "options": ["yes", "no"]})\n'
             'time.sleep(0.5)\n'
             'print(open(os.environ["JOB_PATH"] + "/status/ask/10.1.0.1-22-101.json").read(), flush=True)\n'
             'send(clean=1)\n'
             'time.sleep(0.3)\n')


def test_tool_waiting_for_input_sets_wait_input_and_back(jobs: JobFiles) -> None:
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "ask", "phaseType": "runner_target", "operations": [
        script_op("ask_1", WAIT_TOOL, "runner_target", interpreter="python")]}]}]}
    rt, outcome = jobs.run("404", params, nodes_lines(1))
    log = rt.jobdir.node_log("ask", "10.1.0.1-22-101").read_text()
    assert outcome.status == "succeed", log
    assert '"status": "waitInput"' in log and '"title": "go on?"' in log
    statuses = [(c[0], c[1]["status"]) for c in rt.notifier.calls if c[0] in ("node_status", "phase_status")]
    assert statuses == [("phase_status", "running"), ("node_status", "running"), ("node_status", "waitInput"),
                        ("phase_status", "waitInput"), ("node_status", "running"), ("phase_status", "running"),
                        ("node_status", "succeed"), ("phase_status", "succeed")]


# --- the socket on its own: a started JobSocket and a real client socket ------------------------
ONE_PHASE = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner",
                                                     "operations": [script_op("x_1", "true\n")]}]}]}


@contextlib.contextmanager
def _serving(rt: JobRuntime) -> Iterator[JobSocket]:
    sock = JobSocket(rt, RunLinks())
    sock.start()
    try:
        yield sock
    finally:
        sock.stop()


@pytest.fixture
def served(jobs: JobFiles) -> Iterator[tuple[JobRuntime, JobSocket]]:
    rt = jobs.runtime("450", ONE_PHASE)
    try:
        with _serving(rt) as sock:
            yield rt, sock
    finally:
        rt.console.close()


def _send(sock: JobSocket, message: Any) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message if isinstance(message, bytes) else json.dumps(message).encode(), str(sock.path))


def _ask(sock: JobSocket, message: dict[str, Any], where: Path) -> Any:
    """Sends from a bound socket, as tools do when they want a reply, and returns the reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(where / "client.sock"))
        s.settimeout(30)
        s.sendto(json.dumps(message).encode(), str(sock.path))
        return json.loads(s.recv(65536))


def _console_has(rt: JobRuntime, text: str) -> bool:
    return text in rt.jobdir.console_log.read_text()


class Recorder:
    """Stands in for the MongoDB store: what the socket saves and queries."""

    def __init__(self) -> None:
        self.saved: list[tuple[str, str, str, bool]] = []
        self.queries: list[tuple[Any, ...]] = []

    def save_env(self, job_id: str, name: str, value: str, hidden: bool = False) -> None:
        self.saved.append((job_id, name, value, hidden))

    def find_documents(self, collection: str, condition: dict[str, Any], projection: Any, limit: int) -> Any:
        self.queries.append((collection, condition, projection, limit))
        return [{"name": "doc-1"}]


def test_start_exports_the_socket_and_stop_removes_it(jobs: JobFiles) -> None:
    rt = jobs.runtime("451", ONE_PHASE)
    sock = JobSocket(rt, RunLinks())
    sock.start()
    path = sock.path
    assert rt.env["AUTOEXEC_JOB_SOCK"] == str(path) and path.is_socket()
    assert path.parent == rt.jobdir.root
    thread = sock.thread
    sock.stop()
    assert not path.exists() and thread is not None and not thread.is_alive()
    sock.stop()  # a second stop is harmless
    rt.console.close()


def test_a_job_dir_too_deep_for_a_socket_name_falls_back_to_tmp(jobs: JobFiles) -> None:
    rt = jobs.runtime("9" * 60, ONE_PHASE)
    assert len(str(rt.jobdir.root)) > 100
    sock = JobSocket(rt, RunLinks())
    sock.start()
    try:
        assert sock.path.parent == Path("/tmp") and rt.env["AUTOEXEC_JOB_SOCK"] == str(sock.path)
        _send(sock, {"action": "setEnv", "items": {"DEEP": "ok"}, "onlyInProcess": 1})
        wait_until(lambda: rt.env.get("DEEP") == "ok", what="setEnv through the /tmp socket")
    finally:
        sock.stop()
        rt.console.close()
    assert not sock.path.exists()


def test_set_env_updates_the_job_env_and_the_store_unless_in_process_only(served: tuple[JobRuntime, JobSocket]) -> None:
    rt, sock = served
    store = Recorder()
    rt.env.store = store  # devmode has no MongoDB: the job env keeps job variables here
    _send(sock, {"action": "setEnv", "items": {"A": 1, "B": "two"}})
    wait_until(lambda: rt.env.get("B") == "two", what="setEnv")
    assert rt.env["A"] == "1"
    assert sorted(store.saved) == [("450", "A", "1", False), ("450", "B", "two", False)]
    _send(sock, {"action": "setEnv", "items": {"C": "3"}, "onlyInProcess": True})
    wait_until(lambda: rt.env.get("C") == "3", what="in-process setEnv")
    assert [s[1] for s in store.saved] == ["A", "B"]


def test_a_bad_datagram_is_logged_and_the_listener_goes_on(served: tuple[JobRuntime, JobSocket]) -> None:
    rt, sock = served
    _send(sock, b"{not json")
    _send(sock, {"action": "fly"})
    _send(sock, {"action": "setEnv", "items": {"AFTER": "yes"}, "onlyInProcess": 1})
    wait_until(lambda: rt.env.get("AFTER") == "yes", what="the listener to go on")
    wait_until(lambda: _console_has(rt, "unknown action 'fly'"), what="the unknown action in the console log")
    assert _console_has(rt, "ERROR: Process event:b'{not json' failed")


def test_query_collect_db_replies_to_the_sender(jobs: JobFiles, tmp_path: Path) -> None:
    rt = jobs.runtime("452", ONE_PHASE)
    query = {"action": "queryCollectDB", "queryParams": {"collection": "COLLECT_OS", "condition": {"ip": "10.0.0.1"}}}
    with _serving(rt) as sock:
        assert _ask(sock, query, tmp_path) == {"result": None, "error": "MongoDB is not configured"}
    store = Recorder()
    (tmp_path / "client.sock").unlink()
    with _serving(dataclasses.replace(rt, mirror=store)) as sock:  # the runtime is frozen: one with a store
        assert _ask(sock, query, tmp_path) == {"result": [{"name": "doc-1"}], "error": None}
    assert store.queries == [("COLLECT_OS", {"ip": "10.0.0.1"}, None, 10)]
    rt.console.close()


def test_global_lock_without_a_console_is_refused_with_a_reason(served: tuple[JobRuntime, JobSocket], tmp_path: Path) -> None:
    _, sock = served
    reply = _ask(sock, {"action": "globalLock", "lockParams": {"lockTarget": "t", "lockMode": "write"}}, tmp_path)
    assert reply["lockId"] is None and "needs the console" in reply["message"]


def test_wait_input_is_routed_to_the_running_node(served: tuple[JobRuntime, JobSocket]) -> None:
    rt, sock = served
    seen: list[Any] = []

    class Run:
        def wait_input(self, interact: Any) -> None:
            seen.append(interact)

    _send(sock, {"action": "informNodeWaitInput", "phaseName": "p", "resourceId": 7, "interact": {"title": "?"}})
    wait_until(lambda: _console_has(rt, "no running node 7 in phase p"), what="the unknown node in the console log")
    sock.running.enter("p", 7, Run())
    _send(sock, {"action": "informNodeWaitInput", "phaseName": "p", "resourceId": 7, "interact": {"title": "?"}})
    _send(sock, {"action": "informNodeWaitInput", "phaseName": "p", "resourceId": 7, "interact": "plain text"})
    _send(sock, {"action": "informNodeWaitInput", "phaseName": "p", "resourceId": 7, "clean": 1})
    wait_until(lambda: len(seen) == 3, what="three wait-input calls")
    assert seen == [{"title": "?"}, {"message": "plain text"}, None]


def test_round_continue_releases_the_barrier(served: tuple[JobRuntime, JobSocket]) -> None:
    _, sock = served
    barrier = sock.barrier
    assert not barrier.wait("p", 1, timeout=0.05, stop=lambda: False)
    _send(sock, {"action": "informRoundContinue", "phaseName": "p", "roundNo": 1})
    assert barrier.wait("p", 1, timeout=30, stop=lambda: False)
    assert not barrier.wait("p", 2, timeout=30, stop=lambda: True), "a stopping job does not wait"
