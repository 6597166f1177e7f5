"""Command layer of the Tagent client: execmd, execmdasync, upload, download, echo, reload, updatecred.

One request per TCP connection, as the agent forks a child per connection. Unlike the original
Python client, ``execmd`` returns the command's real exit status and keeps "the command failed"
apart from "the agent could not be driven". Framing and the handshake live in
:mod:`autoexec.transports.tagent_wire`, stream adapters in :mod:`autoexec.transports.tagent_stream`;
their public names are re-exported here so callers keep importing from this module.
"""
from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from autoexec.transports.decoding import DEFAULT_CHARSETS, LineSplitter
from autoexec.transports.tagent_stream import (MAX_LINE, DeadlineEvent, read_pieces,
                                               receive_file, receive_tar, tar_pieces)
from autoexec.transports.tagent_wire import (
    DATA_PIECE, MAX_FRAME, PLAIN_PROTOCOL, SECURE_PROTOCOL, AgentInfo, End, TagentAuthError, TagentCancelled,
    TagentConnectError, TagentConnection, TagentError, TagentProtocolError, TagentRemoteError, TagentTimeout,
    answer_challenge, codec_for, enable_keepalive, one_line, split_challenge,
)

__all__ = [
    "DATA_PIECE", "MAX_FRAME", "MAX_LINE", "PLAIN_PROTOCOL", "SECURE_PROTOCOL", "AgentInfo", "End",
    "TagentAuthError", "TagentCancelled", "TagentClient", "TagentConnectError", "TagentConnection",
    "TagentError", "TagentProtocolError", "TagentRemoteError", "TagentTimeout", "answer_challenge",
    "codec_for", "one_line", "parse_exit_trailer", "split_challenge",
]


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
    output_charsets: tuple[str, ...] = DEFAULT_CHARSETS
    """Fallback charsets of the common line rule, after the agent's own (``output.charsets``)."""
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
        enable_keepalive(sock, self.keepalive)
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
        """Bounded by the connect timeout: an agent that accepts but never greets (hung, or a
        port that swallows connections) is a failure to connect, not a slow command."""
        read_timeout, conn.read_timeout = conn.read_timeout, min(conn.read_timeout, self.connect_timeout)
        try:
            conn.handshake(self.charset)
        except TagentTimeout:
            raise TagentTimeout(f"agent {self.where} did not complete the handshake within "
                                f"{conn.read_timeout:g} s (connect timeout)") from None
        finally:
            conn.read_timeout = read_timeout
            if conn.info is not None:  # cached even when the credential is then rejected
                self.info = conn.info

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
        lines = LineSplitter(self.output_charsets, charset=self.codec, max_line=MAX_LINE)
        watch = DeadlineEvent(cancel, deadline)
        while True:
            try:
                got = conn.recv(watch)
            except TagentCancelled:
                if watch.expired:
                    raise TagentTimeout("command exceeded its time limit; connection closed") from None
                raise
            if isinstance(got, End):
                for line in lines.flush():
                    on_line(line)
                return self._exit_status(conn, got.trailer, on_line)
            for line in lines.feed(got):
                on_line(line)

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
            self._upload("file", local.name, dest, read_pieces(local))

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
        self._upload(file_type, local.name, dest, tar_pieces(local, arcroot, self.codec))

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
                receive_file(conn, target)
            elif file_type in ("dir", "windir"):
                receive_tar(conn, Path(dest), self.codec)
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
