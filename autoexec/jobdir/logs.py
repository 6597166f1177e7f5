"""Line-stamped log writers for the console log and per-node logs.

Both are external interfaces: the neatlogic runner service tails them while they grow, so every
complete line is written (and reaches the OS) at once, prefixed with ``HH:MM:SS ``. Lines that
arrive together are written together; why: docs/performance.md."""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TextIO

from autoexec.conf.masking import Mask
from autoexec.jobdir.fileio import open_fd_creating_dirs, write_all
from autoexec.conf.settings import load_settings

LineHook = Callable[[str], None]

class _PerSecond:
    """``time.strftime(fmt)``, formatted once per second: one ``time()`` call per log line instead
    of a ``localtime`` + ``strftime``. One tuple, rebound atomically, so threads never pair a
    second with another second's text."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self._last: tuple[int, str] = (-1, "")

    def __call__(self) -> str:
        now = int(time.time())
        last = self._last
        if last[0] == now:
            return last[1]
        text = time.strftime(self.fmt, time.localtime(now))
        self._last = (now, text)
        return text


_stamp = _PerSecond("%H:%M:%S ")
_now_text = _PerSecond("%Y%m%d-%H%M%S")


def link_history(path: str | os.PathLike[str], directory: str | os.PathLike[str], middle: str,
                 new_directory: bool = False) -> str | None:
    """Hard-links ``path`` as ``<directory>/<YYYYmmdd-HHMMSS>.<middle>.txt``; a second run in the
    same second gets ``-1``, ``-2``… (the original crashed on the collision). ``link`` itself
    probes the name (``EEXIST``) and ``directory`` is created when the link says it is missing
    (first, when the caller expects it to be new), so the usual case is one or two syscalls
    instead of ``mkdir`` + ``stat`` + ``stat`` + ``link``. Returns the link's path, ``None`` if it
    cannot be made; a ``directory`` that cannot be created raises, as ``mkdir`` does."""
    base = _now_text()
    folder = os.fspath(directory)
    made = False
    if new_directory:
        try:
            os.mkdir(folder)
            made = True
        except OSError:
            pass  # exists (or its parent is missing): the link below tells
    n = 0
    while True:
        candidate = os.path.join(folder, f"{base}.{middle}.txt" if n == 0 else f"{base}-{n}.{middle}.txt")
        try:
            os.link(path, candidate)
            return candidate
        except FileExistsError:
            n += 1
        except (FileNotFoundError, NotADirectoryError):
            if made:
                return None
            os.makedirs(folder, exist_ok=True)
            made = True
        except OSError:
            return None


class StampedWriter:
    """Thread-safe; holds back an unterminated tail until its newline or :meth:`close`.

    ``mask`` (the job's :class:`autoexec.conf.masking.Masker`) is applied to every complete line before
    it is written, echoed or handed to a hook: this is the one place log lines leave the process,
    so what a tool prints (a password it echoes) is masked like the runner's own lines."""

    def __init__(self, path: str | os.PathLike[str], append: bool = True, echo: TextIO | None = None,
                 fd: int | None = None, mask: Mask | None = None) -> None:
        """``fd``: an already open descriptor of ``path`` (see :class:`NodeLog`)."""
        self.path = path
        self.mask = mask
        if fd is None:
            fd = open_fd_creating_dirs(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC),
                                       0o600)
        self._fd = fd
        self._lock = threading.Lock()
        self._held: list[bytes] | None = None
        self._tail = ""
        self._echo = echo
        self.hooks: list[LineHook] = []
        self.warn_count = 0

    @property
    def echoing(self) -> bool:
        return self._echo is not None

    def set_echo(self, stream: TextIO | None) -> None:
        """Where complete lines are echoed (``None``: nowhere), e.g. once a progress view owns
        the terminal."""
        with self._lock:
            self._echo = stream

    def write(self, text: str) -> None:
        with self._lock:
            text = self._tail + text
            lines = text.split("\n")
            self._tail = lines.pop()
            if lines:
                self._emit(lines)

    def line(self, text: str) -> None:
        if "\n" in text:
            self.write(text + "\n")
            return
        with self._lock:
            if self._tail:
                text, self._tail = self._tail + text, ""
            self._emit((text,))

    def lines(self, texts: list[str] | tuple[str, ...]) -> None:
        """Several lines in one ``write`` (same bytes as one :meth:`line` each)."""
        if texts:
            self.write("\n".join(texts) + "\n")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Lines emitted inside the block (each stamped when emitted) are written together, in one
        ``write``, when it ends (or at an :meth:`unbatched` inside it). For a quick sequence of the
        caller's own lines with nothing between them that waits. Warn counting, echo and hooks are
        not delayed. Inside another batch this is part of the outer one."""
        with self._lock:
            outer = self._held is not None
            if not outer:
                self._held = []
        try:
            yield
        finally:
            if not outer:
                with self._lock:
                    self._flush_held()

    @contextmanager
    def unbatched(self) -> Iterator[None]:
        """Inside a :meth:`batch`: write what it collected, and let lines go out at once until the
        block ends (around a wait, such as an op's run); then the batch collects again."""
        with self._lock:
            batched = self._held is not None
            self._flush_held()
        try:
            yield
        finally:
            if batched:
                with self._lock:
                    if self._fd >= 0 and self._held is None:
                        self._held = []

    def _flush_held(self) -> None:
        held, self._held = self._held, None
        if held:
            write_all(self._fd, b"".join(held))

    def _emit(self, lines: list[str] | tuple[str, ...]) -> None:
        if self._fd < 0:
            raise ValueError("I/O operation on closed file.")
        mask = self.mask
        if mask is not None:
            lines = [mask(ln) for ln in lines]
        stamp = _stamp()
        if len(lines) == 1:
            data = f"{stamp}{lines[0]}\n"
        else:
            data = "".join(f"{stamp}{ln}\n" for ln in lines)
        if self._held is not None:
            self._held.append(data.encode("utf-8", "replace"))
        else:
            write_all(self._fd, data.encode("utf-8", "replace"))
        for ln in lines:
            if ln.startswith(("ERROR:", "WARN:")):
                self.warn_count += 1
            if self._echo is not None:
                try:
                    self._echo.write(ln + "\n")
                    self._echo.flush()
                except (OSError, ValueError):
                    self._echo = None
            for hook in self.hooks:
                hook(ln)

    def close(self) -> None:
        with self._lock:
            if self._tail:
                self._emit([self._tail])
                self._tail = ""
            if self._fd >= 0:
                self._flush_held()
                fd, self._fd = self._fd, -1
                os.close(fd)


class ConsoleLog(StampedWriter):
    """``log/console.txt``; with ``first_fire`` a new generation starts and gets a history link."""

    @classmethod
    def open(cls, path: Path, hislog_dir: Path, first_fire: bool, exec_user: str,
             reuse: bool = False, mask: Mask | None = None) -> "ConsoleLog":
        echo = sys.stdout if (sys.stdout.isatty() or load_settings().echo) else None
        if first_fire and not reuse:
            path.unlink(missing_ok=True)  # a fresh inode, so the previous generation's history link keeps its text
        log = cls(path, append=True, echo=echo, mask=mask)
        if first_fire:
            link_history(path, hislog_dir, exec_user)
        return log


def _create_fresh(path: str | os.PathLike[str]) -> tuple[int, bool]:
    """A new, empty file with a new inode (the previous run's history link keeps its text), and
    whether there was none before: ``O_EXCL`` first, so a node's first run costs one ``open``
    instead of ``unlink`` + ``open``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        return open_fd_creating_dirs(path, flags | os.O_EXCL, 0o600), True
    except FileExistsError:
        os.unlink(path)
        return os.open(path, flags, 0o600), False


class NodeLog(StampedWriter):
    """``log/<phase>/<triple>.txt``, recreated per execution, with a ``.hislog`` hard link whose
    name carries the node's final status once it ends (``running`` while in flight)."""

    def __init__(self, path: str | os.PathLike[str], hislog_dir: str | os.PathLike[str], exec_user: str,
                 mask: Mask | None = None) -> None:
        fd, first_run = _create_fresh(path)
        super().__init__(path, append=False, fd=fd, mask=mask)
        self.exec_user = exec_user
        self._history = link_history(path, hislog_dir, f"running.{exec_user}", new_directory=first_run)

    def finish(self, status: str) -> None:
        self.close()
        if self._history is not None:
            head, name = os.path.split(self._history)
            try:
                os.rename(self._history, os.path.join(head, name.replace(".running.", f".{status}.", 1)))
            except OSError:
                pass


# --- reading a node log back ------------------------------------------------------------
# lines of the node log written by the runner itself around a tool's output
_FRAME_PREFIXES = ("======", "------", "INFO: ", "FINE: ", "ERROR: Execute operation", "ERROR: Node execute complete",
                   "WARN: Operation ", "WARN: Execute operation")


def last_error_lines(log_path: str | None, count: int = 1, skip: str = "", limit: int = 65536) -> list[str]:
    """The last ``count`` lines of a node log that are not the runner's framing (the tool's own
    output and the runner's reason), oldest first, without the ``HH:MM:SS`` stamp; lines saying
    just ``skip`` (a reason shown already) are left out. Empty when the log cannot be read.
    The one reader of a failed node's reason: progress views, the job report, the Prefect record."""
    if not log_path:
        return []
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    found: list[str] = []
    for raw in reversed(lines):
        text = (raw[9:] if len(raw) > 9 and raw[2] == ":" and raw[5] == ":" else raw).strip()
        if not text or text.startswith(_FRAME_PREFIXES) or (skip and text in (skip, f"ERROR: {skip}")):
            continue
        found.append(text)
        if len(found) >= count:
            break
    return found[::-1]


def last_error_line(log_path: str | None, skip: str = "") -> str:
    """The last line of a node log that is not the runner's framing (usually the error)."""
    lines = last_error_lines(log_path, 1, skip)
    return lines[0] if lines else ""
