"""Job-scoped proxy to the console's distributed lock.

Deploy tools serialise access to shared deploy data (workspace, artifacts, mirrors) across jobs
and runners by asking the job, over the job socket, for a console lock. The job remembers what it
holds so that locks never outlive it: at the end every queued lock is cancelled and every held one
released. Fixed from the original: asking again for a handle already held returns
its lock instead of failing.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from autoexec.job.services import ConsoleUnavailable

LockCall = Callable[[dict[str, Any]], Any]


class GlobalLocks:
    notify_wait = 60.0
    retry_every = 15.0
    max_retries = 240
    release_every = 5.0
    max_release_tries = 720

    def __init__(self, call: LockCall | None, job_id: str, runner_id: int, say: Callable[[str], None],
                 stopping: Callable[[], bool]) -> None:
        self.call = call
        self.job_id = job_id
        self.runner_id = runner_id
        self.say = say
        self.stopping = stopping
        self._lock = threading.Lock()
        self._handles: dict[str, Any] = {}
        self._held: dict[Any, dict[str, Any]] = {}
        self._waiters: dict[Any, threading.Event] = {}
        self._stopped = threading.Event()

    # --- requests from tools ------------------------------------------------------------
    def request(self, params: dict[str, Any]) -> dict[str, Any]:
        """The reply sent back to the tool: the console's lock info, or ``lockId`` None + message."""
        if self.call is None:
            return {"lockId": None, "message": "global lock needs the console (not available in devmode)"}
        params = dict(params, jobId=self.job_id, runnerId=params.get("runnerId", self.runner_id))
        action = params.get("action", "lock")
        try:
            if action == "lock":
                return self._lock_(params)
            if action in ("unlock", "cancel"):
                self._release(params.get("lockId"), action)
                return {"lockId": params.get("lockId"), "message": f"{action} done"}
        except ConsoleUnavailable as exc:  # no console (devmode): the tool is told so
            return {"lockId": None, "message": str(exc)}
        except Exception as exc:  # noqa: BLE001 - the tool gets the reason, the job goes on
            return {"lockId": None, "message": f"{action} failed: {exc}"}
        return {"lockId": None, "message": f"unknown lock action {action!r}"}

    def notify(self, lock_id: Any) -> None:
        with self._lock:
            waiter = self._waiters.get(lock_id)
        if waiter is not None:
            waiter.set()

    def _lock_(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.stopping() or self._stopped.is_set():
            return {"lockId": None, "message": "job is stopping"}
        handle = f"{params.get('pid')}:{params.get('lockOwner')}/{params.get('lockTarget')}/{params.get('lockMode')}"
        with self._lock:
            if handle in self._handles:
                lock_id = self._handles[handle]
                return dict(self._held.get(lock_id, {}), lockId=lock_id, wait=0)
        info = self._post(params)
        lock_id = info.get("lockId")
        if info.get("wait") == 1:
            info = self._wait_queued(params, info)
            if info.get("lockId") is None:
                return info
        with self._lock:
            self._handles[handle] = lock_id
            self._held[lock_id] = dict(params, lockId=lock_id)
        return info

    def _wait_queued(self, params: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
        lock_id = info.get("lockId")
        self.say(f"INFO: Wait because of: {info.get('message', '')}")
        event = threading.Event()
        with self._lock:
            self._waiters[lock_id] = event
        try:
            timeout = self.notify_wait
            for _ in range(self.max_retries):
                if event.wait(timeout):
                    if self._stopped.is_set():
                        return {"lockId": None, "message": "job stopped while waiting for the lock"}
                    return dict(info, wait=0)
                timeout = self.retry_every
                again = self._post(dict(params, lockId=lock_id, action="retry"))
                if again.get("wait") != 1:
                    return again
            self._post({"lockId": lock_id, "action": "cancel"})
            message = f"Lock {params.get('lockOwnerName')}:{params.get('lockTarget')} timeout."
            self.say(f"ERROR: {message}")
            return {"lockId": None, "message": message}
        finally:
            with self._lock:
                self._waiters.pop(lock_id, None)

    def _release(self, lock_id: Any, action: str, tries: int | None = None) -> None:
        tries = tries or self.max_release_tries
        for attempt in range(tries):
            try:
                self._post({"lockId": lock_id, "action": action})
                break
            except Exception as exc:  # retried (the last failure re-raised): a lock must not stay held
                if attempt == tries - 1:
                    raise
                self.say(f"WARN: {action} lock {lock_id} failed ({exc}), retrying.")
                time.sleep(self.release_every)
        with self._lock:
            self._held.pop(lock_id, None)
            for handle in [h for h, held in self._handles.items() if held == lock_id]:
                del self._handles[handle]

    def _post(self, params: dict[str, Any]) -> dict[str, Any]:
        assert self.call is not None
        answer = self.call(params)
        return answer if isinstance(answer, dict) else {"lockId": None, "message": str(answer)}

    # --- end of the job -----------------------------------------------------------------
    def stop(self) -> None:
        """Queued locks are cancelled (their tools woken), held ones released."""
        self._stopped.set()
        with self._lock:
            waiting = list(self._waiters.items())
            held = list(self._held)
        for lock_id, event in waiting:
            try:
                self._post({"lockId": lock_id, "action": "cancel"})
            except Exception:  # noqa: BLE001 - best effort at the end of the job
                pass
            event.set()
        for lock_id in held:
            try:
                self._release(lock_id, "unlock", tries=2)  # the job is ending: do not hang it
            except Exception as exc:  # noqa: BLE001 - reported; the job's own outcome stands
                self.say(f"ERROR: unlock {lock_id} failed at job end: {exc}")
