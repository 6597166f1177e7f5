"""Wire layer of the Tagent protocol (``Tagent1.1`` / ``Tagent1.1s``): framing, per-chunk RC4,
charset naming and the challenge/response handshake.

Every wait is bounded by a socket timeout so a dead or stalled agent surfaces as a
:class:`TagentError` instead of a hung worker. The request commands built on top of this live in
:mod:`autoexec.transports.tagent_client`.
"""
from __future__ import annotations

import codecs
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from autoexec.conf.rc4 import rc4
from autoexec.transports.base import FailureKind, TransportError

PLAIN_PROTOCOL = "Tagent1.1"
SECURE_PROTOCOL = "Tagent1.1s"
MAX_FRAME = 65535
DATA_PIECE = 32768
"""Payload size used for streamed data; the agent itself never sends more per chunk."""
_POLL = 0.1


class TagentError(TransportError):
    """Any failure to drive an agent; ``str()`` is one line."""


class TagentConnectError(TagentError):
    """Nothing listening, unreachable, or the connection broke."""

    kind = FailureKind.CONNECT


class TagentAuthError(TagentError):
    """Credential rejected or handshake not understood."""

    kind = FailureKind.AUTH


class TagentTimeout(TagentError):
    """A connect/read/write wait or a command exceeded its limit."""

    kind = FailureKind.TIMEOUT


class TagentProtocolError(TagentError):
    """The peer violated the framing rules or sent something unparseable."""


class TagentRemoteError(TagentError):
    """The agent reported a failure of the request itself (trailer text), e.g. a missing path."""

    kind = FailureKind.REMOTE_EXIT


class TagentCancelled(TagentError):
    """The caller's cancel event was set while waiting."""

    kind = FailureKind.CANCELLED


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
    def send(self, payload: bytes) -> None:
        if len(payload) > MAX_FRAME:
            raise TagentProtocolError(f"message of {len(payload)} bytes exceeds the {MAX_FRAME}-byte frame limit")
        if not payload:
            raise ValueError("use send_end() for the end marker")
        if self.secure:
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

    # -- handshake -----------------------------------------------------------------------
    def handshake(self, charset: str | None = None) -> None:
        """Read the greeting, answer the challenge, and switch to RC4 framing if the agent is secure.

        ``self.info`` is set as soon as the greeting is understood, before authentication, so a
        caller can keep the agent facts even when the credential is then rejected. ``charset``
        overrides the announced one."""
        greeting = self.recv(encrypted=False)
        if isinstance(greeting, End):
            raise TagentProtocolError(f"agent {self.where} sent no greeting")
        info, challenge = split_challenge(greeting)
        self.info = AgentInfo(info.ostype, charset or info.charset, info.protocol)
        if not self._key:
            raise TagentAuthError(f"authentication to {self.where} failed: no credential configured")
        self.secure = info.secure
        self.send(answer_challenge(self._key, challenge).encode("ascii"))
        try:
            reply = self.recv()
        except TagentConnectError:
            raise TagentAuthError(f"authentication to {self.where} failed: agent closed the connection") from None
        if reply != b"auth succeed":
            raise TagentAuthError(f"authentication to {self.where} failed: credential rejected")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def enable_keepalive(sock: socket.socket, idle: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", idle), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
