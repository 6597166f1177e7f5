"""Adapters between the agent's chunk stream and local data: output lines, files, tar trees.

Chunk boundaries carry no meaning in the Tagent protocol, so everything here re-joins or re-cuts
the byte stream; the framing itself is :mod:`autoexec.transports.tagent_wire`.
"""
from __future__ import annotations

import io
import tarfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

from autoexec.transports.tagent_wire import (DATA_PIECE, End, TagentConnection, TagentError,
                                             TagentProtocolError)

MAX_LINE = 1 << 20
"""A line longer than this without a newline is delivered in pieces rather than buffered forever."""


class DeadlineEvent(threading.Event):
    """Looks like a cancel event to the reader, but also fires when a client-side deadline passes."""

    def __init__(self, cancel: threading.Event | None, deadline: float | None) -> None:
        super().__init__()
        self._cancel = cancel
        self._deadline = deadline
        self.expired = False

    def is_set(self) -> bool:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self.expired = True
            return True
        return bool(self._cancel and self._cancel.is_set())


def read_pieces(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while piece := fh.read(DATA_PIECE):
            yield piece


class _PieceWriter(io.RawIOBase):
    """File-like sink that tarfile writes into; collected pieces are drained by a generator."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        piece = bytes(data)
        self.pieces.append(piece)
        return len(piece)


def tar_pieces(local: Path, arcroot: str, codec: str) -> Iterator[bytes]:
    if not local.is_dir():
        raise TagentError(f"upload source {local} is not a directory")
    sink = _PieceWriter()
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.GNU_FORMAT, encoding=codec,
                      dereference=True) as tar:
        if arcroot != ".":
            tar.add(local, arcname=arcroot, recursive=False)
        for path in sorted(local.rglob("*")):
            rel = path.relative_to(local).as_posix()
            tar.add(path, arcname=f"{arcroot}/{rel}" if arcroot != "." else rel, recursive=False)
            if sink.pieces:
                yield b"".join(sink.pieces)
                sink.pieces.clear()
    if sink.pieces:
        yield b"".join(sink.pieces)


def receive_file(conn: TagentConnection, target: Path) -> None:
    tmp = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(tmp, "wb") as fh:
            while True:
                got = conn.recv()
                if isinstance(got, End):
                    if got.trailer:
                        raise conn.remote_error(got.trailer)
                    break
                fh.write(got)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


class _ChunkReader(io.RawIOBase):
    """Presents the agent's data chunks as a byte stream for ``tarfile``'s stream mode."""

    def __init__(self, conn: TagentConnection) -> None:
        self._conn = conn
        self._buf = b""
        self.done = False

    def readable(self) -> bool:
        return True

    def readinto(self, out: Any) -> int:  # any writable buffer
        while not self._buf and not self.done:
            got = self._conn.recv()
            if isinstance(got, End):
                if got.trailer:
                    raise self._conn.remote_error(got.trailer)
                self.done = True
            else:
                self._buf = got
        n = min(len(out), len(self._buf))
        out[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def receive_tar(conn: TagentConnection, dest: Path, codec: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    reader = _ChunkReader(conn)
    try:
        with tarfile.open(fileobj=io.BufferedReader(reader), mode="r|", encoding=codec) as tar:
            tar.extractall(dest, filter="data")
    except tarfile.TarError as err:
        raise TagentProtocolError(f"directory download from {conn.where} is not a valid tar stream: {err}") from None
    while not reader.done:  # drain padding up to the end marker so a late trailer is seen
        reader.read(DATA_PIECE)
