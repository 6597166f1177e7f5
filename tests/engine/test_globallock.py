"""The job's proxy to the console's global lock."""
from __future__ import annotations

import threading
import time
from typing import Any

from autoexec.engine.globallock import GlobalLocks

LOCK = {"pid": 42, "lockOwner": "1/2", "lockOwnerName": "sys/mod", "lockTarget": "workspace", "lockMode": "write",
        "action": "lock"}


class Console:
    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(params)
        if params.get("action") in ("unlock", "cancel"):
            return {"lockId": params["lockId"]}
        return self.answers.pop(0) if self.answers else {"lockId": None, "message": "no answer"}


def locks(console: Console | None, **fast: float) -> GlobalLocks:
    gl = GlobalLocks(console, "77", 1, lambda line: None, lambda: False)
    for key, value in fast.items():
        setattr(gl, key, value)
    return gl


def test_granted_lock_is_remembered_and_released_at_job_end() -> None:
    console = Console({"lockId": 7, "wait": 0})
    gl = locks(console)
    assert gl.request(LOCK)["lockId"] == 7
    assert gl.request(LOCK)["lockId"] == 7  # same handle again: the held lock, not an error
    assert len(console.calls) == 1 and console.calls[0]["jobId"] == "77"
    gl.stop()
    assert console.calls[-1] == {"lockId": 7, "action": "unlock"}


def test_queued_lock_is_granted_by_notify() -> None:
    console = Console({"lockId": 8, "wait": 1, "message": "held by job 5"})
    gl = locks(console)
    reply: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: reply.update(gl.request(LOCK)))
    worker.start()
    time.sleep(0.2)
    gl.notify(8)
    worker.join(5)
    assert reply["lockId"] == 8 and reply["wait"] == 0


def test_queued_lock_retries_then_times_out_and_cancels() -> None:
    console = Console({"lockId": 9, "wait": 1}, {"lockId": 9, "wait": 1}, {"lockId": 9, "wait": 1})
    gl = locks(console, notify_wait=0.05, retry_every=0.05, max_retries=2)
    reply = gl.request(LOCK)
    assert reply["lockId"] is None and "timeout" in reply["message"]
    assert [c.get("action") for c in console.calls] == ["lock", "retry", "retry", "cancel"]


def test_retry_answer_grants_the_lock() -> None:
    console = Console({"lockId": 3, "wait": 1}, {"lockId": 3, "wait": 0})
    reply = locks(console, notify_wait=0.05).request(LOCK)
    assert reply["lockId"] == 3 and reply["wait"] == 0


def test_job_end_wakes_and_cancels_waiting_tools() -> None:
    console = Console({"lockId": 4, "wait": 1})
    gl = locks(console)
    reply: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: reply.update(gl.request(LOCK)))
    worker.start()
    time.sleep(0.2)
    gl.stop()
    worker.join(5)
    assert reply["lockId"] is None and {"lockId": 4, "action": "cancel"} in console.calls


def test_devmode_tells_the_tool_there_is_no_lock_service() -> None:
    reply = locks(None).request(LOCK)
    assert reply["lockId"] is None and "devmode" in reply["message"]
