"""Client side of the Tagent wire protocol (``Tagent1.1`` / ``Tagent1.1s``).

One request per TCP connection, as the agent forks a child per connection. Every wait is
bounded by a socket timeout so a dead or stalled agent surfaces as a :class:`TagentError`
instead of a hung worker. Unlike the original Python client, ``execmd`` returns the command's
real exit status and keeps "the command failed" apart from "the agent could not be driven".
"""
from __future__ import annotations

import codecs
import io
import json
import os
import select
import socket
import struct
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from autoexec.rc4 import rc4
from autoexec.transports.base import TransportError

PLAIN_PROTOCOL = "Tagent1.1"
SECURE_PROTOCOL = "Tagent1.1s"
MAX_FRAME = 65535
DATA_PIECE = 32768
"""Payload size used for streamed data; the agent itself never sends more per chunk."""
MAX_LINE = 1 << 20
"""A line longer than this without a newline is delivered in pieces rather than buffered forever."""
_POLL = 0.1


class TagentError(TransportError):
    """Any failure to drive an agent; ``str()`` is one line."""


class TagentConnectError(TagentError):
    """Nothing listening, unreachable, or the connection broke."""


class TagentAuthError(TagentError):
    """Credential rejected or handshake not understood."""


class TagentTimeout(TagentError):
    """A connect/read/write wait or a command exceeded its limit."""


class TagentProtocolError(TagentError):
    """The peer violated the framing rules or sent something unparseable."""


class TagentRemoteError(TagentError):
    """The agent reported a failure of the request itself (trailer text), e.g. a missing path."""


class TagentCancelled(TagentError):
    """The caller's cancel event was set while waiting."""


@dataclass(frozen=True)
class End:
    """The zero-length end marker; ``trailer`` holds the (decrypted) error text, ``b''`` if clean."""

    trailer: bytes = b""


@dataclass(frozen=True)
class AgentInfo:
    ostype: str
    charset: str
    protocol: str

    @property
    def is_windows(self) -> bool:
        return self.ostype.lower() == "windows"

    @property
    def secure(self) -> bool:
        return self.protocol == SECURE_PROTOCOL


def codec_for(charset: str) -> str:
    """Python codec name for an announced charset. Agents started with ``LANG=C`` announce ``C``,
    which Python does not know; ASCII-compatible UTF-8 is the least surprising reading of it."""
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return "utf-8"


def one_line(text: str) -> str:
    return " ".join(text.split())


def split_challenge(payload: bytes) -> tuple[AgentInfo, str]:
    """``<ostype>|<charset>|<challengeHex>|<protocolVer>`` → agent facts and the challenge hex."""
    fields = payload.decode("latin-1").split("|")
    if len(fields) != 4:
        raise TagentProtocolError(f"unexpected agent greeting with {len(fields)} fields")
    ostype, charset, challenge, protocol = fields
    if protocol not in (PLAIN_PROTOCOL, SECURE_PROTOCOL):
        raise TagentProtocolError(f"unsupported agent protocol version {protocol!r}")
    return AgentInfo(ostype, charset, protocol), challenge


def answer_challenge(key: bytes, challenge_hex: str, now: Callable[[], float] = time.time) -> str:
    """The hex response to a challenge; a challenge that does not decrypt to digits means the
    credential is wrong (the agent encrypted it with a different key)."""
    try:
        plain = rc4(key, bytes.fromhex(challenge_hex)).decode("latin-1")
    except ValueError:
        raise TagentProtocolError("agent challenge is not hex") from None
    parts = plain.split(",")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise TagentAuthError("authentication failed: credential rejected (challenge does not decrypt)")
    server_time = parts[2] if len(parts) > 2 and parts[2] not in ("", "0") else str(int(now()))
    return rc4(key, f"{int(parts[0]) * int(parts[1])},{server_time}".encode()).hex()


def parse_exit_trailer(text: str) -> tuple[int | None, list[str]]:
    """Split an execmd trailer into the exit status (a line of only digits) and other lines."""
    status: int | None = None
    other: list[str] = []
    for line in text.splitlines():
        if line.strip().isdigit():
            status = int(line.strip())
        elif line.strip():
            other.append(line.strip())
    return status, other


class TagentConnection:
    """One authenticated connection: framing, optional per-chunk RC4, bounded waits."""

    def __init__(self, sock: socket.socket, key: bytes, where: str, read_timeout: float, write_timeout: float,
                 max_frame: int = MAX_FRAME) -> None:
        self.sock = sock
        self._key = key
        self.where = where
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.max_frame = max_frame
        self.secure = False
        self.info: AgentInfo | None = None

    # -- raw I/O -------------------------------------------------------------------------
    def _recv_exact(self, n: int, cancel: threading.Event | None, allow_eof: bool = False) -> bytes:
        buf = bytearray()
        last = time.monotonic()
        while len(buf) < n:
            wait = _POLL if cancel is not None else self.read_timeout
            try:
                ready, _, _ = select.select([self.sock], [], [], min(wait, self.read_timeout))
            except (OSError, ValueError) as err:
                raise TagentConnectError(f"connection to {self.where} lost: {err}") from None
            if cancel is not None and cancel.is_set():
                raise TagentCancelled("aborted")
            if not ready:
                if time.monotonic() - last >= self.read_timeout:
                    raise TagentTimeout(
                        f"agent {self.where} sent nothing for {self.read_timeout:g} s (read timeout)")
                continue
            try:
                piece = self.sock.recv(n - len(buf))
            except OSError as err:
                raise TagentConnectError(f"connection to {self.where} lost: {err}") from None
            if not piece:
                if allow_eof and not buf:
                    return b""
                raise TagentConnectError(f"connection to {self.where} closed in the middle of a chunk")
            buf += piece
            last = time.monotonic()
        return bytes(buf)

    def _send_all(self, data: bytes) -> None:
        self.sock.settimeout(self.write_timeout)
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise TagentTimeout(f"agent {self.where} accepted no data for {self.write_timeout:g} s") from None
        except OSError as err:
            raise TagentConnectError(f"connection to {self.where} lost while sending: {err}") from None

    # -- framing -------------------------------------------------------------------------
    def send(self, payload: bytes, encrypt: bool | None = None) -> None:
        if len(payload) > MAX_FRAME:
            raise TagentProtocolError(f"message of {len(payload)} bytes exceeds the {MAX_FRAME}-byte frame limit")
        if not payload:
            raise ValueError("use send_end() for the end marker")
        if self.secure if encrypt is None else encrypt:
            payload = rc4(self._key, payload)
        self._send_all(struct.pack(">H", len(payload)) + payload)

    def send_stream(self, pieces: Iterator[bytes]) -> None:
        for piece in pieces:
            for off in range(0, len(piece), DATA_PIECE):
                self.send(piece[off:off + DATA_PIECE])
        self.send_end()

    def send_end(self) -> None:
        self._send_all(b"\0\0")
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def recv(self, cancel: threading.Event | None = None, encrypted: bool | None = None) -> bytes | End:
        head = self._recv_exact(2, cancel, allow_eof=True)
        if not head:
            raise TagentConnectError(f"agent {self.where} closed the connection without an end marker")
        (length,) = struct.unpack(">H", head)
        crypt = self.secure if encrypted is None else encrypted
        if length == 0:
            trailer = self._read_to_eof(cancel)
            return End(rc4(self._key, trailer) if crypt and trailer else trailer)
        if length > self.max_frame:
            raise TagentProtocolError(f"agent {self.where} announced a {length}-byte frame (limit {self.max_frame})")
        payload = self._recv_exact(length, cancel)
        return rc4(self._key, payload) if crypt else payload

    def _read_to_eof(self, cancel: threading.Event | None) -> bytes:
        out = bytearray()
        while True:
            piece = self._recv_exact(1, cancel, allow_eof=True)
            if not piece:
                return bytes(out)
            out += piece
            if len(out) > MAX_FRAME:
                raise TagentProtocolError(f"agent {self.where} error trailer exceeds {MAX_FRAME} bytes")

    def recv_data(self, cancel: threading.Event | None = None) -> bytes:
        """A chunk that must be data; a trailer here is the agent refusing the request."""
        got = self.recv(cancel)
        if isinstance(got, End):
            raise self.remote_error(got.trailer)
        return got

    def remote_error(self, trailer: bytes) -> TagentError:
        if not trailer:
            return TagentProtocolError(f"agent {self.where} ended the stream early")
        return TagentRemoteError(f"agent {self.where}: {one_line(self.decode(trailer))}")

    def decode(self, data: bytes) -> str:
        return data.decode(codec_for(self.info.charset if self.info else "utf-8"), "replace")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@dataclass
class TagentClient:
    """Issues Tagent requests to one agent. Cheap to create; every request opens its own connection."""

    host: str
    port: int
    password: str = field(repr=False)
    user: str = "root"
    connect_timeout: float = 60.0
    read_timeout: float = 3600.0
    write_timeout: float = 60.0
    charset: str | None = None
    """Override of the agent-announced charset (``Endpoint.charset``)."""
    keepalive: int = 290
    max_frame: int = MAX_FRAME
    info: AgentInfo | None = field(default=None, init=False)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def codec(self) -> str:
        return codec_for(self.charset or (self.info.charset if self.info else "UTF-8"))

    # -- connection ----------------------------------------------------------------------
    def connect(self, read_timeout: float | None = None) -> TagentConnection:
        """Open a TCP connection and complete the challenge/response handshake."""
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except socket.timeout:
            raise TagentTimeout(f"connect to {self.where} timed out after {self.connect_timeout:g} s") from None
        except OSError as err:
            raise TagentConnectError(f"connect to {self.where} failed: {err.strerror or err}") from None
        _enable_keepalive(sock, self.keepalive)
        conn = TagentConnection(sock, self.password.encode("latin-1", "replace"), self.where,
                                read_timeout if read_timeout is not None else self.read_timeout,
                                self.write_timeout, self.max_frame)
        try:
            self._handshake(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _handshake(self, conn: TagentConnection) -> None:
        greeting = conn.recv(encrypted=False)
        if isinstance(greeting, End):
            raise TagentProtocolError(f"agent {self.where} sent no greeting")
        info, challenge = split_challenge(greeting)
        conn.info = AgentInfo(info.ostype, self.charset or info.charset, info.protocol)
        self.info = conn.info
        if not self.password:
            raise TagentAuthError(f"authentication to {self.where} failed: no credential configured")
        conn.secure = info.secure
        conn.send(answer_challenge(conn._key, challenge).encode("ascii"))
        try:
            reply = conn.recv()
        except TagentConnectError:
            raise TagentAuthError(f"authentication to {self.where} failed: agent closed the connection") from None
        if reply != b"auth succeed":
            raise TagentAuthError(f"authentication to {self.where} failed: credential rejected")

    def request(self, conn: TagentConnection, command: str, *args: str | bytes, user: str | None = None,
                raw_tail: str | None = None) -> None:
        """Send ``<user>|<command>|<charset>|hex(arg)...``; args are encoded in the agent charset."""
        charset = conn.info.charset if conn.info else "UTF-8"
        fields = [user or self.user, command, charset]
        for arg in args:
            data = arg if isinstance(arg, bytes) else self.encode(arg)
            fields.append(data.hex())
        if raw_tail is not None:
            fields.append(raw_tail)
        conn.send("|".join(fields).encode("ascii"))

    def encode(self, text: str) -> bytes:
        try:
            return text.encode(self.codec)
        except UnicodeEncodeError as err:
            raise TagentError(f"text cannot be represented in the agent charset {self.codec}: {err.reason}") from None

    # -- commands ------------------------------------------------------------------------
    def execmd(self, cmd: str, on_line: Callable[[str], None], *, env: dict[str, str] | None = None,
               timeout: int = 0, eof_regex: str = "", cancel: threading.Event | None = None,
               deadline: float | None = None, user: str | None = None,
               on_connect: Callable[[TagentConnection], None] | None = None) -> int:
        """Run ``cmd`` through the agent's shell and return its exit status.

        Output lines (decoded from the agent charset, newline stripped) go to ``on_line`` as they
        arrive. ``deadline`` (``time.monotonic()`` value) bounds the wait client-side; exceeding it
        closes the connection, which makes the agent kill the command's session.
        """
        conn = self.connect()
        if on_connect is not None:
            on_connect(conn)
        try:
            env_json = json.dumps(env, separators=(",", ":")) if env else ""
            args = [cmd, eof_regex, env_json] + ([str(int(timeout))] if timeout else [])
            self.request(conn, "execmd", *args, user=user)
            return self._stream_exec(conn, on_line, cancel, deadline)
        finally:
            conn.close()

    def _stream_exec(self, conn: TagentConnection, on_line: Callable[[str], None],
                     cancel: threading.Event | None, deadline: float | None) -> int:
        lines = _LineAssembler(self.codec, on_line)
        watch = _DeadlineEvent(cancel, deadline)
        while True:
            try:
                got = conn.recv(watch)
            except TagentCancelled:
                if watch.expired:
                    raise TagentTimeout("command exceeded its time limit; connection closed") from None
                raise
            if isinstance(got, End):
                lines.flush()
                return self._exit_status(conn, got.trailer, on_line)
            lines.feed(got)

    def _exit_status(self, conn: TagentConnection, trailer: bytes, on_line: Callable[[str], None]) -> int:
        if not trailer:
            return 0
        text = conn.decode(trailer)
        status, other = parse_exit_trailer(text)
        if status is None:
            message = one_line(text)
            if message.startswith("execute timeout"):
                raise TagentTimeout(f"agent killed the command: {message}")
            raise TagentRemoteError(f"agent {self.where}: {message}")
        for line in other:
            on_line(f"ERROR: {line}")
        return status

    def execmd_async(self, cmd: str, *, env: dict[str, str] | None = None, timeout: int = 0,
                     user: str | None = None) -> None:
        """Launch ``cmd`` and return once the agent confirms the launch."""
        conn = self.connect()
        try:
            env_json = json.dumps(env, separators=(",", ":")) if env else ""
            self.request(conn, "execmdasync", cmd, "", env_json, str(int(timeout)), user=user)
            got = conn.recv()
            if not isinstance(got, End) or got.trailer:
                raise conn.remote_error(got.trailer if isinstance(got, End) else got)
        finally:
            conn.close()

    def _upload(self, file_type: str, src_name: str, dest: str, pieces: Iterator[bytes],
                follow_links: bool = True) -> None:
        conn = self.connect(read_timeout=self.read_timeout)
        try:
            self.request(conn, "upload", file_type, src_name, dest, "1" if follow_links else "0")
            status = conn.recv_data()
            if not status.startswith(b"Status:200"):
                raise TagentProtocolError(f"agent {self.where} answered {conn.decode(status)[:80]!r} to upload")
            conn.send_stream(pieces)
            got = conn.recv()
            if not isinstance(got, End) or got.trailer:
                raise conn.remote_error(got.trailer if isinstance(got, End) else got)
        finally:
            conn.close()

    def upload_file(self, local: Path, dest: str, *, convert_text: bool = False) -> None:
        """Ship one file; ``dest`` ending in ``/`` or naming a directory receives ``local``'s name.
        ``convert_text`` re-encodes a UTF-8 text file into the agent charset (scripts on GBK hosts)."""
        local = Path(local)
        if convert_text:
            data = local.read_bytes()
            try:
                converted = self.encode(data.decode("utf-8"))
            except UnicodeDecodeError:
                converted = data
            self._upload("file", local.name, dest, iter([converted]))
        else:
            self._upload("file", local.name, dest, _read_pieces(local))

    def write_file(self, content: bytes, dest: str) -> None:
        """Create or overwrite ``dest`` with ``content`` (the original's ``writeFile``)."""
        self._upload("file", os.path.basename(dest.rstrip("/")) or "file", dest,
                      iter([content] if content else []), follow_links=False)

    def upload_dir(self, local: Path, dest: str, *, create_dir: bool = False) -> None:
        """Ship a directory tree as a tar stream. ``create_dir`` recreates ``local``'s own directory
        inside ``dest``; otherwise its contents land directly in ``dest``. Names are encoded in the
        agent charset so a GBK host sees GBK file names."""
        local = Path(local)
        file_type = "windir" if self.info and self.info.is_windows else "dir"
        arcroot = local.name if create_dir else "."
        self._upload(file_type, local.name, dest, _tar_pieces(local, arcroot, self.codec))

    def download(self, src: str, dest: Path) -> str:
        """Fetch a file or a directory; returns the agent's file type (``file`` or ``dir``)."""
        conn = self.connect(read_timeout=self.read_timeout)
        try:
            self.request(conn, "download", src, "1")
            status = conn.decode(conn.recv_data())
            if not status.startswith("Status:200,FileType:"):
                raise TagentProtocolError(f"agent {self.where} answered {status[:80]!r} to download")
            file_type = status.split("FileType:", 1)[1].split(",", 1)[0]
            if file_type == "file":
                target = Path(dest) / src.rsplit("/", 1)[-1] if Path(dest).is_dir() else Path(dest)
                _receive_file(conn, target)
            elif file_type in ("dir", "windir"):
                _receive_tar(conn, Path(dest), self.codec)
            else:
                raise TagentProtocolError(f"download of {src}: file type {file_type} not supported")
            return file_type
        finally:
            conn.close()

    def echo(self, text: str) -> str:
        conn = self.connect()
        try:
            self.request(conn, "echo", text, user="none")
            return conn.decode(conn.recv_data())
        finally:
            conn.close()

    def reload(self) -> None:
        """Ask the agent to restart its listener (4 fields, unlike the broken Python original)."""
        conn = self.connect()
        try:
            self.request(conn, "reload", "none", user="none")
            got = conn.recv_data()
            if not got.startswith(b"Status:200"):
                raise TagentProtocolError(f"agent {self.where} answered {conn.decode(got)[:80]!r} to reload")
        finally:
            conn.close()

    def update_cred(self, new_credential: str) -> None:
        """Store a new credential on the agent (effective after its next reload)."""
        conn = self.connect()
        try:
            self.request(conn, "updatecred", new_credential.strip(), user="none")
            got = conn.recv()
            if not isinstance(got, End) or got.trailer:
                trailer = got.trailer if isinstance(got, End) else got
                raise TagentRemoteError(f"agent {self.where} refused the new credential: "
                                        f"{one_line(conn.decode(trailer))}")
        finally:
            conn.close()


class _DeadlineEvent(threading.Event):
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


class _LineAssembler:
    """Joins chunk pieces into whole lines before decoding, so multi-byte characters split across
    chunks (GBK, UTF-8) decode correctly."""

    def __init__(self, codec: str, sink: Callable[[str], None]) -> None:
        self._codec = codec
        self._sink = sink
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            self._emit(bytes(self._buf[:nl]))
            del self._buf[:nl + 1]
        if len(self._buf) > MAX_LINE:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._emit(bytes(self._buf))
            self._buf.clear()

    def _emit(self, raw: bytes) -> None:
        self._sink(raw.rstrip(b"\r").decode(self._codec, "replace"))


def _enable_keepalive(sock: socket.socket, idle: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", idle), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def _read_pieces(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while piece := fh.read(DATA_PIECE):
            yield piece


class _PieceWriter(io.RawIOBase):
    """File-like sink that tarfile writes into; collected pieces are drained by a generator."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.pieces.append(bytes(data))
        return len(data)


def _tar_pieces(local: Path, arcroot: str, codec: str) -> Iterator[bytes]:
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


def _receive_file(conn: TagentConnection, target: Path) -> None:
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

    def readinto(self, out: bytearray) -> int:  # type: ignore[override]
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


def _receive_tar(conn: TagentConnection, dest: Path, codec: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    reader = _ChunkReader(conn)
    try:
        with tarfile.open(fileobj=io.BufferedReader(reader), mode="r|", encoding=codec) as tar:
            tar.extractall(dest, filter="data")
    except tarfile.TarError as err:
        raise TagentProtocolError(f"directory download from {conn.where} is not a valid tar stream: {err}") from None
    while not reader.done:  # drain padding up to the end marker so a late trailer is seen
        reader.read(DATA_PIECE)
