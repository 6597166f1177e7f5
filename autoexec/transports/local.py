"""Run a tool as a child process on the runner (§10.7), killable as a whole process group.

Children get their own session (so abort reaches grandchildren too) and, where util-linux's
``setpriv`` exists, a parent-death signal so a SIGKILLed runner does not leave them orphaned (the
original left them running, §20.4). No ``preexec_fn``: it forces fork() of the whole runner (page
tables of a 100+ MB process, per node), while plain ``start_new_session`` lets Python use vfork —
measured 3.9 s vs 0.3 s for 500 children. Arguments are an argv list, never re-parsed by a shell.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from autoexec.transports.base import LineSink

_SETPRIV = shutil.which("setpriv")
_PDEATHSIG = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []


@dataclass
class LocalResult:
    exit_code: int | None
    pid: int | None
    error: str | None = None
    killed: bool = False


class LocalProcess:
    """One running child. ``kill()`` is safe from any thread, any number of times."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            _PDEATHSIG + argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
        )
        self.killed = False
        self.timed_out = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self, grace: float = 2.0) -> None:
        """SIGTERM the whole group, SIGKILL what is left after ``grace`` seconds."""
        self.killed = True
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and not _group_alive(self.proc.pid):
                return
            time.sleep(0.05)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stream(self, on_line: LineSink, timeout: float | None = None) -> LocalResult:
        timer = None
        if timeout:
            def on_timeout() -> None:
                self.timed_out = True
                self.kill()
            timer = threading.Timer(timeout, on_timeout)
            timer.daemon = True
            timer.start()
        try:
            assert self.proc.stdout is not None
            for raw in iter(self.proc.stdout.readline, b""):
                on_line(_decode(raw).rstrip("\r\n"))
            code = self.proc.wait()
        finally:
            if timer:
                timer.cancel()
            if self.proc.stdout:
                self.proc.stdout.close()
        if self.timed_out:
            return LocalResult(None, self.pid, error=f"timed out after {timeout:g}s, process group killed", killed=True)
        if self.killed:
            return LocalResult(None, self.pid, error="aborted", killed=True)
        return LocalResult(code, self.pid)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _decode(raw: bytes) -> str:
    """Tools on Chinese systems may print GBK; keep such lines readable instead of mojibake."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return raw.decode("gb18030")
        except UnicodeDecodeError:
            return raw.decode("utf-8", "replace")
