"""Line-stamped log writers for the console log and per-node logs (§16).

Both are external interfaces: the neatlogic runner service tails them while they grow, so every
complete line is written (and reaches the OS) at once, prefixed with ``HH:MM:SS ``.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable, TextIO

LineHook = Callable[[str], None]


def _stamp() -> str:
    return time.strftime("%H:%M:%S ")


def _hislog_name(directory: Path, middle: str) -> Path:
    """``<YYYYmmdd-HHMMSS>.<middle>.txt``; a second run in the same second gets ``-1``, ``-2``…
    (the original crashed on the collision)."""
    base = time.strftime("%Y%m%d-%H%M%S")
    candidate = directory / f"{base}.{middle}.txt"
    n = 1
    while candidate.exists():
        candidate = directory / f"{base}-{n}.{middle}.txt"
        n += 1
    return candidate


class StampedWriter:
    """Thread-safe; holds back an unterminated tail until its newline or :meth:`close`."""

    def __init__(self, path: Path, append: bool = True, echo: TextIO | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = open(path, "ab" if append else "wb", buffering=0)
        self._lock = threading.Lock()
        self._tail = ""
        self._echo = echo
        self.hooks: list[LineHook] = []
        self.warn_count = 0

    def write(self, text: str) -> None:
        with self._lock:
            text = self._tail + text
            lines = text.split("\n")
            self._tail = lines.pop()
            if lines:
                self._emit(lines)

    def line(self, text: str) -> None:
        self.write(text + "\n")

    def _emit(self, lines: list[str]) -> None:
        stamp = _stamp()
        self._fh.write("".join(f"{stamp}{ln}\n" for ln in lines).encode("utf-8", "replace"))
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
            if not self._fh.closed:
                self._fh.close()


class ConsoleLog(StampedWriter):
    """``log/console.txt``; with ``first_fire`` a new generation starts and gets a history link."""

    @classmethod
    def open(cls, path: Path, hislog_dir: Path, first_fire: bool, exec_user: str,
             reuse: bool = False) -> "ConsoleLog":
        echo = sys.stdout if (sys.stdout.isatty() or os.environ.get("AUTOEXEC_ECHO") == "1") else None
        if first_fire and not reuse:
            path.unlink(missing_ok=True)  # a fresh inode, so the previous generation's history link keeps its text
        log = cls(path, append=True, echo=echo)
        if first_fire:
            hislog_dir.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, _hislog_name(hislog_dir, exec_user))
            except OSError:
                pass
        return log


class NodeLog(StampedWriter):
    """``log/<phase>/<triple>.txt``, recreated per execution, with a ``.hislog`` hard link whose
    name carries the node's final status once it ends (``running`` while in flight)."""

    def __init__(self, path: Path, hislog_dir: Path, exec_user: str) -> None:
        path.unlink(missing_ok=True)  # a fresh inode: the previous run's history link keeps its text
        super().__init__(path, append=False)
        self.exec_user = exec_user
        hislog_dir.mkdir(parents=True, exist_ok=True)
        self._history = _hislog_name(hislog_dir, f"running.{exec_user}")
        try:
            os.link(path, self._history)
        except OSError:
            self._history = None  # type: ignore[assignment]

    def finish(self, status: str) -> None:
        self.close()
        if self._history is not None:
            final = self._history.with_name(self._history.name.replace(".running.", f".{status}.", 1))
            try:
                self._history.rename(final)
            except OSError:
                pass
