"""Durable, ordered delivery of console callbacks.

The original called the console synchronously with no retry, so a console restart lost status
updates. Here every callback is appended (fsync'd) to ``<job dir>/outbox/queue.jsonl`` and one
sender delivers in order, with backoff, at least once, across processes. Details: docs/design.md."""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol

from autoexec.console.errors import AUTH_CODES, ConsoleError, ConsoleHTTPError, ConsoleUnavailable
from autoexec.console.models import Envelope
from autoexec.jobdir.fileio import append_once
from autoexec.conf.retry import Backoff, RetryCancelled, retry

log = logging.getLogger("autoexec.console.outbox")

# Answers that say "the console (or its proxy) is not there right now", not "this entry is bad":
# retried without limit, because skipping would only dead-letter every later entry too.
_TRANSIENT_CODES = frozenset({408, 429, 502, 503, 504}) | AUTH_CODES


class Deliverer(Protocol):
    def call(self, api: str, payload: Mapping[str, Any], *, check: bool = True) -> Envelope: ...


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    api: str
    payload: dict[str, Any]
    end: int  # byte offset just after this entry's line: the ack cursor once delivered


Handler = Callable[[OutboxEntry, Envelope], None]
DeadHandler = Callable[[OutboxEntry, str], None]


class Outbox:
    def __init__(self, job_dir: Path, client: Deliverer, *, base_delay: float = 0.5,
                 max_delay: float = 30.0, max_server_errors: int = 8, server_error_window: float = 600.0,
                 poll_interval: float = 0.5) -> None:
        self.dir = Path(job_dir) / "outbox"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._client = client
        self._base, self._cap = base_delay, max_delay
        self._max_server_errors = max_server_errors
        # A console answering 500 to everything for minutes (restart, DB down) must not cost
        # callbacks: an entry is only given up after this many seconds *and* max_server_errors tries.
        self._server_error_window = server_error_window
        self._poll = poll_interval
        self._queue = self.dir / "queue.jsonl"
        self._cursor_path = self.dir / "acked"
        self._dead_path = self.dir / "dead.jsonl"
        self._qfd = os.open(self._queue, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        self._append_fd = os.open(self.dir / "append.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._sender_fd = os.open(self.dir / "sender.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._mutex = threading.Lock()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._known_size, self._last_seq = 0, 0
        self._my_end = 0
        self._acked = self._read_cursor()
        self._handlers: dict[str, list[Handler]] = {}
        self._dead_handlers: list[DeadHandler] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"Outbox(dir={str(self.dir)!r}, acked={self._acked[0]})"

    # -- configuration -----------------------------------------------------------------------------
    def subscribe(self, api: str, handler: Handler) -> None:
        """``handler(entry, envelope)`` runs in the sender thread after each delivery of ``api``."""
        self._handlers.setdefault(api, []).append(handler)

    def on_dead_letter(self, handler: DeadHandler) -> None:
        self._dead_handlers.append(handler)

    def start(self) -> Outbox:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="console-outbox", daemon=True)
            self._thread.start()
        return self

    # -- producer side ---------------------------------------------------------------------------------
    def put(self, api: str, payload: Mapping[str, Any]) -> int:
        """Append durably and wake the sender; returns the entry's sequence number."""
        if self._closed:
            raise RuntimeError("outbox is closed")
        with self._mutex, self._flock(self._append_fd):
            size = os.fstat(self._qfd).st_size
            if size != self._known_size:
                self._catch_up(size)
            seq = self._last_seq + 1
            line = json.dumps({"seq": seq, "api": api, "time": time.time(), "payload": dict(payload)},
                              ensure_ascii=False, separators=(",", ":")) + "\n"
            data = line.encode("utf-8")
            os.write(self._qfd, data)
            os.fsync(self._qfd)
            self._known_size = size + len(data)
            self._last_seq = seq
            self._my_end = self._known_size
        with self._cond:
            self._cond.notify_all()
        return seq

    def _catch_up(self, size: int) -> None:
        """Another process appended (or this is the first put): learn the last seq, heal a torn tail."""
        data = os.pread(self._qfd, size - self._known_size, self._known_size)
        for raw in data.split(b"\n"):
            with contextlib.suppress(ValueError, AttributeError):
                self._last_seq = max(self._last_seq, int(json.loads(raw)["seq"]))
        if data and not data.endswith(b"\n"):
            # a writer died mid-line; terminate it so our line stays parseable (it is skipped later)
            os.write(self._qfd, b"\n")
            size += 1
        self._known_size = size

    # -- waiting -----------------------------------------------------------------------------------------
    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far (by any process) is delivered or dead-lettered."""
        deadline = time.monotonic() + timeout
        target = max(self._my_end, self._complete_end())
        while True:
            if self._current_ack() >= target:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._cond:
                self._cond.wait(min(remaining, 0.05))

    def _complete_end(self) -> int:
        """Offset just after the last complete line (a torn tail can never be delivered)."""
        ack = self._current_ack()
        size = os.fstat(self._qfd).st_size
        if size <= ack:
            return ack
        data = os.pread(self._qfd, size - ack, ack)
        return ack + data.rfind(b"\n") + 1

    def pending(self) -> int:
        """Entries (from any process) not yet delivered."""
        return len(self._read_entries(self._current_ack()))

    def close(self, timeout: float = 5.0) -> None:
        """Stop sending; undelivered entries stay on disk for the next process."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():
            for fd in (self._qfd, self._append_fd, self._sender_fd):
                os.close(fd)

    # -- cursor ------------------------------------------------------------------------------------------
    def _read_cursor(self) -> tuple[int, int]:
        try:
            data = json.loads(self._cursor_path.read_text())
            return int(data["offset"]), int(data["seq"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0, 0

    def _current_ack(self) -> int:
        return self._read_cursor()[0]

    def _write_cursor(self, entry: OutboxEntry) -> None:
        tmp = self.dir / f".acked.{os.getpid()}.{threading.get_ident()}"
        with open(tmp, "w") as fh:
            fh.write(json.dumps({"offset": entry.end, "seq": entry.seq}))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._cursor_path)
        self._acked = (entry.end, entry.seq)
        with self._cond:
            self._cond.notify_all()

    def _read_entries(self, offset: int) -> list[OutboxEntry]:
        size = os.fstat(self._qfd).st_size
        data = os.pread(self._qfd, max(0, size - offset), offset) if size > offset else b""
        entries: list[OutboxEntry] = []
        pos = offset
        for raw in data.split(b"\n")[:-1]:  # the part after the last newline is still being written
            pos += len(raw) + 1
            try:
                obj = json.loads(raw)
                entries.append(OutboxEntry(int(obj["seq"]), str(obj["api"]), dict(obj["payload"]), pos))
            except (ValueError, KeyError, TypeError):
                log.warning("outbox %s: skipping a torn entry ending at byte %d", self.dir, pos)
                entries.append(OutboxEntry(-1, "", {}, pos))
        return entries

    # -- sender ------------------------------------------------------------------------------------------
    @staticmethod
    @contextlib.contextmanager
    def _flock(fd: int) -> Iterator[None]:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _run(self) -> None:
        holding = False
        try:
            while not self._stop.is_set():
                if not holding:
                    try:
                        fcntl.flock(self._sender_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        holding = True
                    except BlockingIOError:
                        self._stop.wait(self._poll)
                        continue
                entries = self._read_entries(self._current_ack())
                if not entries:
                    with self._cond:
                        self._cond.wait(self._poll)
                    continue
                for entry in entries:
                    if entry.seq >= 0 and not self._deliver(entry):
                        return  # stopping; the entry stays pending
                    self._write_cursor(entry)
        except Exception:  # the sender must never die silently: logged with its traceback
            log.exception("outbox %s: sender thread failed", self.dir)
        finally:
            if holding:
                fcntl.flock(self._sender_fd, fcntl.LOCK_UN)

    def _deliver(self, entry: OutboxEntry) -> bool:
        """``False`` when stopping left the entry pending; ``True`` once delivered or dead-lettered."""
        server_errors, retries = 0, 0
        first_error: float | None = None

        def worth_retrying(exc: BaseException) -> bool:
            nonlocal server_errors, first_error
            assert isinstance(exc, ConsoleError)
            first_error = first_error if first_error is not None else time.monotonic()
            if not self._should_retry(exc, server_errors, time.monotonic() - first_error):
                return False
            if isinstance(exc, ConsoleHTTPError) and exc.status_code not in _TRANSIENT_CODES:
                server_errors += 1
            return True

        def told(exc: BaseException, retry_no: int, delay: float) -> None:
            nonlocal retries
            retries = retry_no + 1
            log.log(logging.WARNING if retry_no == 0 else logging.DEBUG,
                    "outbox: %s #%d not delivered (%s); retrying in %.1fs",
                    entry.api, entry.seq, getattr(exc, "message", exc), delay)

        try:
            envelope = retry(lambda: self._client.call(entry.api, entry.payload, check=True), attempts=None,
                             backoff=Backoff(first=self._base, cap=self._cap, jitter=True), cancel=self._stop,
                             retry_on=(ConsoleError,), should_retry=worth_retrying, on_retry=told)
        except RetryCancelled:
            return False
        except ConsoleError as exc:
            self._dead_letter(entry, exc.message, exc.status_code)
            return True
        except Exception as exc:  # noqa: BLE001 - e.g. an unknown API name in an old queue
            self._dead_letter(entry, f"{type(exc).__name__}: {exc}", None)
            return True
        if retries:
            log.info("outbox: %s #%d delivered after %d retries", entry.api, entry.seq, retries)
        for handler in self._handlers.get(entry.api, []):
            try:
                handler(entry, envelope)
            except Exception:
                log.exception("outbox: handler for %s failed", entry.api)
        return True

    def _should_retry(self, exc: ConsoleError, server_errors: int, failing_for: float) -> bool:
        if isinstance(exc, ConsoleUnavailable):
            return True
        if isinstance(exc, ConsoleHTTPError) and exc.retryable:
            # a 500/520 may be this payload's fault: bounded, so one poison entry cannot block the queue
            return (exc.status_code in _TRANSIENT_CODES or server_errors + 1 < self._max_server_errors
                    or failing_for < self._server_error_window)
        return False

    def _dead_letter(self, entry: OutboxEntry, message: str, status_code: int | None) -> None:
        log.error("outbox: %s #%d dead-lettered: %s", entry.api, entry.seq, message)
        record = {"seq": entry.seq, "api": entry.api, "statusCode": status_code, "message": message,
                  "time": time.time(), "payload": entry.payload}
        append_once(self._dead_path, (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"), sync=True)
        for handler in self._dead_handlers:
            try:
                handler(entry, message)
            except Exception:  # the entry is dead-lettered already: logged with its traceback
                log.exception("outbox: dead-letter handler failed")

    def dead_letters(self) -> list[dict[str, Any]]:
        try:
            lines = self._dead_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]
