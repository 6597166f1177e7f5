"""Replaying a spool while it is written, and closing the record of a job process that died."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from autoexec.flows.feed import Feed, process_alive


def _write(path: Path, *events: dict) -> None:
    with open(path, "a") as fh:
        for event in events:
            fh.write(json.dumps(event) + "\n")


JOB = {"e": "job_start", "jobId": "1", "pid": 4242, "startTime": "1"}


def test_events_in_order_and_outcomes_by_key_even_before_their_start(tmp_path: Path) -> None:
    spool = tmp_path / "s.jsonl"
    _write(spool, JOB, {"e": "group_start", "group": 0}, {"e": "node_start", "k": 1},
           {"e": "node_end", "k": 1, "status": "succeed"})
    feed = Feed(spool, alive=lambda pid, start: True).start()
    assert feed.first(5)["pid"] == 4242
    assert feed.outcome(1)["status"] == "succeed"  # waiting for it does not need the start consumed
    assert [feed.next()["e"] for _ in range(2)] == ["group_start", "node_start"]  # job_start is ``first``
    with open(spool, "a") as fh:  # a line arriving in two writes is read once, whole
        fh.write('{"e": "group_end", "gro')
        fh.flush()
        time.sleep(0.1)
        fh.write('up": 0, "failed": false}\n{"e": "job_end", "status": "succeed"}\n')
    assert feed.next() == {"e": "group_end", "group": 0, "failed": False}
    assert feed.next()["e"] == "job_end"
    assert feed.ended


def test_a_dead_job_process_gets_its_open_runs_closed_as_crashed(tmp_path: Path) -> None:
    spool = tmp_path / "s.jsonl"
    _write(spool, JOB, {"e": "group_start", "group": 3}, {"e": "node_start", "k": 7},
           {"e": "batch_start", "k": 8}, {"e": "batch_end", "k": 8, "status": "succeed"})
    alive = threading.Event()
    alive.set()
    feed = Feed(spool, poll=0.01, alive=lambda pid, start: alive.is_set()).start()
    kinds = [feed.next()["e"] for _ in range(3)]
    assert kinds == ["group_start", "node_start", "batch_start"]
    alive.clear()
    started = time.monotonic()
    assert feed.outcome(7)["status"] == "failed"
    assert time.monotonic() - started < 5
    assert feed.outcome(8)["status"] == "succeed"  # what really ended keeps its outcome
    group_end, job_end = feed.next(), feed.next()
    assert group_end["e"] == "group_end" and group_end["group"] == 3 and group_end["failed"]
    assert job_end["e"] == "job_end" and job_end["status"] == "crashed"


def test_process_alive_checks_the_start_time_against_pid_reuse() -> None:
    stat = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    assert process_alive(os.getpid(), stat[19])
    assert process_alive(os.getpid(), None)
    assert not process_alive(os.getpid(), str(int(stat[19]) + 1))
    assert not process_alive(2 ** 22 + 12345, None)
