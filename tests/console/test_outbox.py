from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from autoexec.console.client import ConsoleClient
from autoexec.console.outbox import Outbox
from tests.fake_console import TOKEN, USER, FakeConsole
from tests.waiting import wait_until

FAST = {"base_delay": 0.02, "max_delay": 0.1, "poll_interval": 0.05}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def outboxes() -> Iterator[list[Outbox]]:
    made: list[Outbox] = []
    yield made
    for ob in made:
        ob.close()


def make(outboxes: list[Outbox], job_dir: Path, client: ConsoleClient, **kw: object) -> Outbox:
    ob = Outbox(job_dir, client, **{**FAST, **kw})  # type: ignore[arg-type]
    outboxes.append(ob)
    return ob


def delivered(fake: FakeConsole) -> list[int]:
    return [r.body["i"] for r in fake.callbacks("updateJobStatus")]


def test_entries_are_durable_lines_before_delivery(tmp_path: Path, console_client: ConsoleClient,
                                                   fake_console: FakeConsole, outboxes: list[Outbox]) -> None:
    ob = make(outboxes, tmp_path, console_client)
    assert ob.put("updateJobStatus", {"i": 0}) == 1
    assert ob.put("updateJobStatus", {"i": 1}) == 2
    lines = [json.loads(x) for x in (tmp_path / "outbox" / "queue.jsonl").read_text().splitlines()]
    assert [(x["seq"], x["api"], x["payload"]) for x in lines] == \
        [(1, "updateJobStatus", {"i": 0}), (2, "updateJobStatus", {"i": 1})]
    assert delivered(fake_console) == []  # not started: nothing sent yet
    assert ob.pending() == 2
    ob.start()
    assert ob.flush(5)
    assert delivered(fake_console) == [0, 1] and ob.pending() == 0


def test_console_down_then_back_delivers_each_once_in_order(
        tmp_path: Path, console_client: ConsoleClient, fake_console: FakeConsole,
        outboxes: list[Outbox]) -> None:
    fake_console.set_mode("down")
    ob = make(outboxes, tmp_path, console_client).start()
    for i in range(20):
        ob.put("updateJobStatus", {"i": i})
    assert not ob.flush(0.4)
    fake_console.set_mode("up")
    assert ob.flush(5)
    assert delivered(fake_console) == list(range(20))
    assert ob.dead_letters() == []


@pytest.mark.parametrize("mode,code", [("5xx", 500), ("5xx", 503), ("522", 522)])
def test_server_errors_then_ok(tmp_path: Path, console_client: ConsoleClient, fake_console: FakeConsole,
                               outboxes: list[Outbox], mode: str, code: int) -> None:
    fake_console.set_mode(mode, code=code)
    ob = make(outboxes, tmp_path, console_client, max_server_errors=2).start()  # the time window keeps it
    for i in range(5):
        ob.put("updateJobStatus", {"i": i})
    wait_until(lambda: len(fake_console.attempts) >= 4, 30, "four delivery attempts", interval=0.02)
    fake_console.set_mode("up")
    assert ob.flush(5)
    assert delivered(fake_console) == list(range(5))


def test_poison_500_is_dead_lettered_after_bounded_retries(
        tmp_path: Path, console_client: ConsoleClient, fake_console: FakeConsole,
        outboxes: list[Outbox]) -> None:
    fake_console.responses["updateGlobalParam"] = lambda body: (500, {"Status": "ERROR", "Message": "boom"})
    ob = make(outboxes, tmp_path, console_client, max_server_errors=3, server_error_window=0).start()
    ob.put("updateGlobalParam", {"key": "k"})
    ob.put("updateJobStatus", {"i": 1})
    assert ob.flush(5)
    assert len([a for a in fake_console.attempts if a.api == "updateGlobalParam"]) == 3
    assert delivered(fake_console) == [1]
    [dead] = ob.dead_letters()
    assert dead["api"] == "updateGlobalParam" and dead["statusCode"] == 500 and "boom" in dead["message"]


@pytest.mark.parametrize("answer", [(400, {"Status": "ERROR", "Message": "bad field"}),
                                    (200, {"Status": "ERROR", "Message": "bad field"})])
def test_refused_entry_dead_lettered_immediately_and_delivery_continues(
        tmp_path: Path, console_client: ConsoleClient, fake_console: FakeConsole,
        outboxes: list[Outbox], answer: tuple) -> None:
    fake_console.responses["exportJobEnv"] = lambda body: answer
    ob = make(outboxes, tmp_path, console_client).start()
    ob.put("updateJobStatus", {"i": 0})
    ob.put("exportJobEnv", {"envName": "X"})
    ob.put("updateJobStatus", {"i": 2})
    assert ob.flush(5)
    assert len([a for a in fake_console.attempts if a.api == "exportJobEnv"]) == 1
    assert delivered(fake_console) == [0, 2]
    [dead] = ob.dead_letters()
    assert "bad field" in dead["message"] and dead["seq"] == 2


def test_closed_with_pending_then_next_outbox_delivers_rest_once(
        tmp_path: Path, console_client: ConsoleClient, fake_console: FakeConsole,
        outboxes: list[Outbox]) -> None:
    first = make(outboxes, tmp_path, console_client).start()
    first.put("updateJobStatus", {"i": 0})
    assert first.flush(5)
    fake_console.set_mode("down")
    first.put("updateJobStatus", {"i": 1})
    first.put("updateJobStatus", {"i": 2})
    first.close()
    fake_console.set_mode("up")
    second = make(outboxes, tmp_path, console_client)
    assert second.pending() == 2
    assert second.put("updateJobStatus", {"i": 3}) == 4  # sequence continues across processes
    second.start()
    assert second.flush(5)
    assert delivered(fake_console) == [0, 1, 2, 3]
    second.close()
    third = make(outboxes, tmp_path, console_client).start()
    assert third.flush(5) and third.pending() == 0
    time.sleep(0.2)
    assert delivered(fake_console) == [0, 1, 2, 3]


def test_sigkilled_process_pending_entries_delivered_by_next(
        tmp_path: Path, fake_console: FakeConsole, console_client: ConsoleClient,
        outboxes: list[Outbox]) -> None:
    fake_console.set_mode("down")  # nothing the child queues can be delivered
    child_code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from autoexec.console.client import ConsoleClient\n"
        "from autoexec.console.outbox import Outbox\n"
        "c = ConsoleClient(sys.argv[1], sys.argv[2], __import__('os').environ['T'], tenant='develop',"
        " connect_timeout=1, read_timeout=2)\n"
        "ob = Outbox(Path(sys.argv[3]), c, base_delay=0.02, max_delay=0.1).start()\n"
        "for i in range(6):\n"
        "    ob.put('updateJobStatus', {'i': i})\n"
        "print('queued', flush=True)\n"
        "time.sleep(60)\n")
    env = dict(os.environ, T=TOKEN, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", child_code, fake_console.url, USER, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "queued"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(5)
    fake_console.set_mode("up")
    ob = make(outboxes, tmp_path, console_client).start()
    assert ob.flush(5)
    assert delivered(fake_console) == list(range(6))


def test_two_outboxes_share_one_ordered_queue(tmp_path: Path, console_client: ConsoleClient,
                                              fake_console: FakeConsole, outboxes: list[Outbox]) -> None:
    """The job process and an --abort helper append to the same job's outbox concurrently."""
    job = make(outboxes, tmp_path, console_client).start()
    helper = make(outboxes, tmp_path, console_client).start()
    for i in range(0, 10, 2):
        job.put("updateJobStatus", {"i": i})
        helper.put("updateJobStatus", {"i": i + 1})
    assert helper.flush(5) and job.flush(5)
    assert delivered(fake_console) == list(range(10))


def test_torn_tail_from_a_crash_is_skipped(tmp_path: Path, console_client: ConsoleClient,
                                           fake_console: FakeConsole, outboxes: list[Outbox]) -> None:
    (tmp_path / "outbox").mkdir()
    (tmp_path / "outbox" / "queue.jsonl").write_bytes(
        b'{"seq":1,"api":"updateJobStatus","time":0,"payload":{"i":0}}\n{"seq":2,"api":"upd')
    ob = make(outboxes, tmp_path, console_client)
    assert ob.put("updateJobStatus", {"i": 9}) == 2  # the torn seq 2 was never written
    ob.start()
    assert ob.flush(5)
    assert delivered(fake_console) == [0, 9]
