"""Descriptor-level file operations, so the modules that keep the job's files say what they do
with a file, not which syscalls do it. Plain descriptors rather than Python file objects: a file
object costs more syscalls per file on the per-node path (docs/performance.md). ``os.open``
descriptors are close-on-exec."""
from __future__ import annotations

import os


def open_fd_creating_dirs(path: str | os.PathLike[str], flags: int, mode: int = 0o600) -> int:
    """``os.open`` that creates the parent directories on demand: status, output and input files
    are written several times per node, so the common case (directory present) is one syscall.
    Files are the owner's only by default: status, outputs and inputs may hold what tools printed."""
    try:
        return os.open(path, flags, mode)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
        return os.open(path, flags, mode)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until everything is written (a regular file only writes short on a full disk)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The whole file through one descriptor: open, read until EOF, close."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def write_new(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Creates ``path``, which must not exist yet (a temp name the caller then renames), with
    ``data``; owner-only by default, since params and nodes files hold passwords."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def append_once(path: str | os.PathLike[str], data: bytes, *, create: bool = True, sync: bool = False,
                mode: int = 0o600) -> None:
    """Appends ``data`` in one ``write`` (whole, among concurrent appenders); ``sync`` waits until
    it is on disk. Without ``create`` a missing file raises ``FileNotFoundError``."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | (os.O_CREAT if create else 0), mode)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


class AppendFile:
    """An append-only file kept open: one ``write`` per :meth:`write`, so each record lands whole
    even with several threads or processes appending, and nothing blocks on a reader."""

    def __init__(self, path: str | os.PathLike[str], mode: int = 0o600) -> None:
        self.path = path
        self._fd = open_fd_creating_dirs(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, mode)

    def write(self, data: bytes) -> None:
        os.write(self._fd, data)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
