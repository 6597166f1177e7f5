"""Run a tool as a child process on the runner, killable as a whole process group.

Per-node cost in the runner limits a large fan-out, so children are started without forking the
runner (:mod:`autoexec.transports.spawn`), kept from outliving it by one watcher
(:mod:`autoexec.transports.orphans`), and timed by a shared timer. Figures: docs/performance.md."""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from autoexec.transports import orphans
from autoexec.transports.base import LineSink
from autoexec.transports.deadlines import call_later
from autoexec.transports.decoding import DEFAULT_CHARSETS, LineSplitter
from autoexec.transports.spawn import Spawned, spawn, which

_SETPRIV = shutil.which("setpriv")
_PDEATHSIG = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []

LinesSink = Callable[[list[str]], None]
"""Receives the complete lines of one read (decoded, without newlines), in order."""

READ_SIZE = 65536


@dataclass
class LocalResult:
    exit_code: int | None
    pid: int | None
    error: str | None = None
    killed: bool = False


class LocalProcess:
    """One running child. ``kill()`` is safe from any thread, any number of times.

    ``find_program`` resolves ``argv[0]`` to the file to run (a caller that starts many children
    with one environment caches it); by default it is looked up on ``env["PATH"]`` from ``cwd``
    (:func:`autoexec.transports.spawn.which`), as ``Popen`` did."""

    def __init__(self, argv: list[str], cwd: Path | str, env: Mapping[str, str],
                 find_program: Callable[[str], str] | None = None,
                 output_charsets: tuple[str, ...] = DEFAULT_CHARSETS) -> None:
        self.argv = argv
        self.output_charsets = output_charsets
        cwd_text = os.fspath(cwd)
        self._watched = orphans.available()
        if self._watched or not _PDEATHSIG:
            command = list(argv)
            executable = find_program(command[0]) if find_program else which(command[0], env.get("PATH"), cwd_text)
        else:
            command = _PDEATHSIG + list(argv)
            executable = command[0]
        self._child: Spawned = spawn(command, executable, cwd_text, env)
        self.pid: int = self._child.pid
        if self._watched:
            orphans.watch(self.pid)
        self.killed = False
        self.timed_out = False

    # --- reaping ------------------------------------------------------------------------
    @property
    def returncode(self) -> int | None:
        return self._child.returncode

    def poll(self) -> int | None:
        return self._reaped(self._child.poll())

    def wait(self) -> int:
        code = self._child.wait()
        self._reaped(code)
        return code

    def _reaped(self, code: int | None) -> int | None:
        if code is not None and self._watched:
            orphans.release(self.pid)  # right after the reap; a no-op when already released
        return code

    # --- control ------------------------------------------------------------------------
    def kill(self, grace: float = 2.0) -> None:
        """SIGTERM the whole group, SIGKILL what is left after ``grace`` seconds."""
        self.killed = True
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self.poll() is not None and not _group_alive(self.pid):
                return
            time.sleep(0.05)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _on_timeout(self) -> None:
        self.timed_out = True
        self.kill()

    def stream(self, on_line: LineSink, timeout: float | None = None, on_lines: LinesSink | None = None) -> LocalResult:
        """Feeds the child's output to ``on_lines`` (per read) or ``on_line`` (per line) until EOF,
        then waits for it."""
        limit = call_later(timeout, self._on_timeout) if timeout else None
        sink = on_lines if on_lines is not None else _per_line(on_line)
        try:
            pump(self._child.fd, sink, splitter=LineSplitter(self.output_charsets))
            code = self.wait()
        except BaseException:
            self.abandon()  # the sink raised
            raise
        finally:
            if limit is not None:
                limit.cancel()
            self._child.close_output()
        if self.timed_out:
            return LocalResult(None, self.pid, error=f"timed out after {timeout:g}s, process group killed", killed=True)
        if self.killed:
            return LocalResult(None, self.pid, error="aborted", killed=True)
        return LocalResult(code, self.pid)

    def abandon(self) -> None:
        """For a caller that will not :meth:`stream`: stop reading and reap the child whenever
        it ends (on a thread), as ``Popen``'s own cleanup did for an abandoned child."""
        self._child.close_output()
        if self.returncode is None:
            threading.Thread(target=self.wait, name="autoexec-reap", daemon=True).start()


def _per_line(on_line: LineSink) -> LinesSink:
    def sink(lines: list[str]) -> None:
        for line in lines:
            on_line(line)
    return sink


def pump(fd: int, sink: LinesSink, read_size: int = READ_SIZE, splitter: LineSplitter | None = None) -> None:
    """Reads ``fd`` to EOF; each read's complete lines go to ``sink`` at once; a line split
    across reads is held until its newline; a last line without one is delivered at EOF (cut and
    decoded by the rule of every transport, :class:`~autoexec.transports.decoding.LineSplitter`)."""
    splitter = splitter or LineSplitter()
    while True:
        chunk = os.read(fd, read_size)
        if not chunk:
            break
        lines = splitter.feed(chunk)
        if lines:
            sink(lines)
    rest = splitter.flush()
    if rest:
        sink(rest)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False
