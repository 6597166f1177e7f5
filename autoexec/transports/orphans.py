"""Children must not outlive a runner that is SIGKILLed (the original left them running).

One watcher process per runner holds the read end of a pipe on which each child's process group
is announced; when the runner dies the kernel closes the write end and the watcher kills every
group still announced. Cheaper than a parent-death signal per child (docs/performance.md)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

_WATCHER = r"""
import os, signal
groups = set()
pending = b""
while True:
    data = os.read(0, 65536)
    if not data:
        break
    *lines, pending = (pending + data).split(b"\n")
    for line in lines:
        try:
            (groups.add if line[:1] == b"+" else groups.discard)(int(line[1:]))
        except ValueError:
            pass
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""

_MAX_STARTS = 4
"""A watcher that keeps dying (an unusable interpreter) is given up on: callers use ``setpriv``."""


class _Watcher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd = -1
        self._proc: subprocess.Popen[bytes] | None = None
        self._live: set[int] = set()
        self._starts = 0

    def _start(self) -> int:
        """Under ``_lock``. Returns the write end, or -1 when no watcher can run."""
        if self._fd >= 0 or self._starts >= _MAX_STARTS:
            return self._fd
        self._starts += 1
        try:
            if not sys.executable:
                raise OSError("no sys.executable")
            self._proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _WATCHER], stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True, close_fds=True, bufsize=0)
        except (OSError, ValueError):
            self._starts = _MAX_STARTS
            return -1
        assert self._proc.stdin is not None
        self._fd = self._proc.stdin.fileno()
        os.set_blocking(self._fd, False)  # a stopped watcher must never block a node: it gets replaced
        return self._fd

    def available(self) -> bool:
        if self._fd >= 0:
            return True
        with self._lock:
            return self._start() >= 0

    def _send(self, message: bytes) -> None:
        fd = self._fd
        if fd < 0:
            with self._lock:
                fd = self._start()
            if fd < 0:
                return
        try:
            os.write(fd, message)  # < PIPE_BUF: atomic among threads
        except OSError:
            self._restart(fd)

    def _restart(self, dead_fd: int) -> None:
        """The watcher went away (killed by someone) or stopped reading: make sure it is gone
        (a stopped one, resumed later, would act on stale announcements), start another and
        announce what is live."""
        with self._lock:
            if self._fd == dead_fd and self._proc is not None:
                try:
                    self._proc.kill()
                    if self._proc.stdin is not None:
                        self._proc.stdin.close()
                    self._proc.wait(timeout=1)
                except (OSError, subprocess.TimeoutExpired):
                    pass
                self._fd, self._proc = -1, None
            fd = self._start()
            if fd < 0:
                return
            try:
                for pgid in list(self._live):
                    os.write(fd, b"+%d\n" % pgid)
            except OSError:
                pass

    def add(self, pgid: int) -> None:
        self._live.add(pgid)
        self._send(b"+%d\n" % pgid)

    def remove(self, pgid: int) -> None:
        if pgid in self._live:
            self._live.discard(pgid)
            self._send(b"-%d\n" % pgid)


_watcher = _Watcher()


def available() -> bool:
    """Whether children can be protected this way in this process (starts the watcher once)."""
    return _watcher.available()


def watch(pgid: int) -> None:
    """Kill process group ``pgid`` if this process dies before :func:`release` is called."""
    _watcher.add(pgid)


def release(pgid: int) -> None:
    """``pgid``'s leader was reaped: forget it (call right after the wait)."""
    _watcher.remove(pgid)
