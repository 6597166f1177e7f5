"""One run per job, and a job that can be controlled from its first millisecond.

A job's identity is an exclusive ``flock`` on ``<job dir>/autoexec.pid`` plus the holder's record
in it: the kernel drops the lock however the holder dies, and two runs never overlap. A control
request that arrives before the lock is taken waits in ``autoexec.request``. Details:
docs/design.md."""
from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Protocol

from autoexec.conf.errors import AutoexecError

EXIT_BUSY = 3
"""Exit status of a run refused because the job is already running."""

LOCK_NAME = "autoexec.pid"
REQUEST_NAME = "autoexec.request"


class Controllable(Protocol):
    """What a control request acts on (``control.JobControl``)."""

    def abort(self) -> None: ...
    def pause(self) -> None: ...


class JobBusy(AutoexecError):
    """Another process holds the job's lock. ``str()`` is the one line to print."""

    def __init__(self, job_id: str, holder: dict[str, Any] | None) -> None:
        self.job_id = job_id
        self.holder = holder or {}
        pid = self.holder.get("pid", "?")
        flow = self.holder.get("flowRunId")
        where = f"pid {pid}" + (f", Prefect flow run {flow}" if flow else "")
        super().__init__(f"job {job_id} is already running ({where}); this run changed nothing")


def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def proc_start_time(pid: int) -> str | None:
    """Start time in clock ticks since boot (``/proc/<pid>/stat`` field 22): with the pid it
    identifies a process uniquely, so a recycled pid is never mistaken for the job."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _boot_ticks() -> float:
    """Now, on the clock of ``proc_start_time`` (boot time, clock ticks)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) * _clock_ticks()


def _record(job_id: str, flow_run_id: str | None) -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "jobId": job_id, "flowRunId": flow_run_id, "startTime": proc_start_time(pid)}


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_holder(root: Path, wait: float = 0.0) -> dict[str, Any] | None:
    """The record in ``autoexec.pid`` (``None``: empty or missing). With ``wait``, an empty file is
    read again for up to that long: a holder writes its record right after taking the lock."""
    deadline = time.monotonic() + wait
    while True:
        try:
            data = _parse((root / LOCK_NAME).read_bytes())
        except OSError:
            data = None
        if data is not None or time.monotonic() >= deadline:
            return data
        time.sleep(0.02)


class JobLock:
    """The held lock of one job invocation (see the module doc)."""

    def __init__(self, fd: int, root: Path, job_id: str) -> None:
        self._fd = fd
        self.root = root
        self.job_id = job_id
        self._size = os.fstat(fd).st_size
        self.flow_run_id: str | None = None

    @classmethod
    def acquire(cls, root: Path, job_id: str, flow_run_id: str | None = None) -> JobLock:
        """Take the lock (creating the job dir and the file if needed) and write the record;
        :class:`JobBusy` when another process holds it — then nothing was written."""
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise JobBusy(job_id, read_holder(root, wait=1.0)) from None
        lock = cls(fd, root, job_id)
        lock.record(flow_run_id)
        return lock

    def record(self, flow_run_id: str | None = None) -> None:
        """(Re)write the holder record in place, padded to the old length with spaces (JSON allows
        trailing white space), so a reader never sees an empty or half-written document."""
        self.flow_run_id = flow_run_id
        raw = json.dumps(_record(self.job_id, flow_run_id)).encode()
        os.pwrite(self._fd, raw.ljust(self._size), 0)
        self._size = max(self._size, len(raw))

    def honour_request(self, control: Controllable) -> None:
        """Apply a control request left for this run (see :meth:`take_request`)."""
        request = self.take_request()
        if request == "abort":
            control.abort()
        elif request == "pause":
            control.pause()

    def take_request(self) -> str | None:
        """A control request (``abort``/``pause``) left for this run by a command that found no
        running process yet; older requests (for an earlier run) are dropped."""
        path = self.root / REQUEST_NAME
        try:
            data = _parse(path.read_bytes())
        except OSError:
            return None
        try:
            path.unlink()
        except OSError:
            pass
        started = proc_start_time(os.getpid())
        if data is None or started is None:
            return None
        try:
            fresh = float(data.get("ticks", -1)) >= int(started)
        except (TypeError, ValueError):
            return None
        action = data.get("action")
        return action if fresh and action in ("abort", "pause") else None

    def release(self) -> None:
        """Empty the record (nobody runs the job now), then let the lock go."""
        if self._fd < 0:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> JobLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def leave_request(root: Path, action: str) -> None:
    """For a run that is starting but has not written its record yet (see the module doc)."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{REQUEST_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"action": action, "ticks": _boot_ticks(), "by": os.getpid()}), encoding="utf-8")
    os.replace(tmp, root / REQUEST_NAME)


def running_pid(root: Path, job_id: str) -> int | None:
    """The pid of the live process holding ``job_id``'s record, if any (pid and start time must
    both match: a recycled pid is somebody else)."""
    data = read_holder(root)
    if data is None:
        return None
    pid = data.get("pid")
    if not isinstance(pid, int) or str(data.get("jobId")) != str(job_id):
        return None
    recorded = data.get("startTime")
    return pid if process_alive(pid, None if recorded is None else str(recorded)) else None


def process_alive(pid: int, start_time: str | None = None) -> bool:
    """Whether ``pid`` runs and is no zombie (a zombie is as good as gone); with ``start_time`` (clock
    ticks since boot, as :func:`proc_start_time` reads them) also that it is that same process, not
    a recycled pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return start_time is None  # no /proc entry to read: the signal check is all there is
    return fields[0] != "Z" and (start_time is None or fields[19] == start_time)


def wait_gone(pid: int, seconds: float, interval: float = 0.05) -> bool:
    """Whether ``pid`` is gone within ``seconds`` (checked once more at the deadline)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(interval)
    return not process_alive(pid)


def kill_tree(pid: int) -> bool:
    """SIGKILL ``pid``'s process group when it leads one (a tool and what it started), else ``pid``;
    ``False`` when it was already gone or may not be signalled."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except OSError:
        return False
    return True
