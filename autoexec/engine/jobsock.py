"""The job socket: a Unix datagram socket tools and the runner service talk to while a
job runs (``$AUTOEXEC_JOB_SOCK`` = ``<job dir>/job<pid>.sock``).

Handled: ``informRoundContinue`` (the console lets a multi-runner grayScale round go on),
``informNodeWaitInput`` (a tool waits for a human: node status ``waitInput``), ``setEnv`` (job
variables — broken in the original), ``queryCollectDB`` (read-only MongoDB query,
replied to the sender) and ``exit``.
"""
from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

from autoexec.job.runlinks import RoundBarrier, RunLinks
from autoexec.models.status import Status
from autoexec.job.runtime import JobRuntime

__all__ = ["JobSocket", "RoundBarrier"]


class JobSocket:
    def __init__(self, rt: JobRuntime, links: RunLinks) -> None:
        self.rt = rt
        self.barrier = links.barrier
        self.running = links.running
        self.path = rt.jobdir.root / f"job{os.getpid()}.sock"
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        from autoexec.engine.globallock import GlobalLocks

        self.locks = GlobalLocks(rt.services.global_lock, rt.job_id, rt.runner_id, rt.console.line,
                                 lambda: rt.control.stopping)

    def start(self) -> None:
        self.path.unlink(missing_ok=True)
        if len(str(self.path)) > 100:  # AF_UNIX path limit: fall back to /tmp, still exported
            self.path = Path("/tmp") / f"autoexec-job{os.getpid()}.sock"
            self.path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.5)
        self.rt.env.set("AUTOEXEC_JOB_SOCK", str(self.path), scope="process")
        self.thread = threading.Thread(target=self._serve, name="autoexec-jobsock", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.locks.stop()
        sock, self.sock = self.sock, None
        if sock is None:
            return
        try:  # wake the listener now instead of at its next poll
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as poke:
                poke.sendto(b"", str(self.path))
        except OSError:
            pass
        if self.thread is not None:
            self.thread.join(timeout=2)
        sock.close()
        self.path.unlink(missing_ok=True)

    def _serve(self) -> None:
        while True:
            sock = self.sock  # None once stop() has run, in another thread
            if sock is None:
                return
            try:
                data, sender = sock.recvfrom(8192)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                continue
            try:
                message = json.loads(data.decode("utf-8"))
                if message.get("action") == "globalLock":
                    threading.Thread(target=self._lock_and_reply, args=(message, sender), daemon=True).start()
                    continue
                reply = self.handle(message)
            except Exception as exc:  # noqa: BLE001 - one bad datagram must not stop the listener
                self.rt.console.line(f"ERROR: Process event:{data[:200]!r} failed, {exc}")
                continue
            if reply is not None:
                self._reply(reply, sender)

    def _reply(self, reply: dict[str, Any], sender: Any) -> None:
        sock = self.sock
        if sender and sock is not None:
            try:
                sock.sendto(json.dumps(reply, default=str).encode("utf-8"), sender)
            except OSError:
                pass

    def _lock_and_reply(self, message: dict[str, Any], sender: Any) -> None:
        """A lock may wait for minutes: answered from its own thread, the listener goes on."""
        self._reply(self.locks.request(message.get("lockParams") or {}), sender)

    def handle(self, message: dict[str, Any]) -> dict[str, Any] | None:
        action = message.get("action")
        if action == "informRoundContinue":
            self.barrier.release(str(message.get("phaseName")), int(message.get("roundNo") or 0))
            return None
        if action == "setEnv":
            items = message.get("items") or {}
            only_here = bool(message.get("onlyInProcess"))
            for name, value in items.items():
                self.rt.env.set(str(name), str(value), scope="process" if only_here else "job")
            return None
        if action == "informNodeWaitInput":
            key = (str(message.get("phaseName")), int(message.get("resourceId") or 0))
            run = self.running.get(*key)
            if run is None:
                raise ValueError(f"no running node {key[1]} in phase {key[0]}")
            if message.get("clean"):
                interact = None
            else:
                raw = message.get("interact")
                interact = raw if isinstance(raw, dict) else {"message": raw}
            run.wait_input(interact)
            self.rt.console.line(f"INFO: Update runner node status to {Status.RUNNING if interact is None else Status.WAIT_INPUT} "
                                 f"succeed.")
            return None
        if action == "queryCollectDB":
            finder = getattr(self.rt.mirror, "find_documents", None)
            if finder is None:
                return {"result": None, "error": "MongoDB is not configured"}
            query = message.get("queryParams") or {}
            result = finder(query.get("collection"), query.get("condition") or {}, query.get("projection"), 10)
            return {"result": result, "error": None if result is not None else "MongoDB query failed"}
        if action == "globalLockNotify":
            self.locks.notify(message.get("lockId"))
            return None
        if action == "exit":
            self.locks.stop()
            return None
        raise ValueError(f"unknown action {action!r}")
