"""A Tagent-protocol server for tests, playing the agent's side of the protocol.

It behaves like the Perl agent on the wire (byte for byte for the captured traces) so the client
can be tested without Perl; fault switches (``stall_after_lines``, ``stall_mid_chunk``) let tests
provoke the failures a real agent shows only rarely. Runs in threads of the test process.
"""
from __future__ import annotations

import glob
import json
import os
import pwd
import random
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from autoexec.conf.rc4 import rc4

LINE_MAX = 32768
ChallengeSource = Callable[[], tuple[int, int, int]]


def random_challenge() -> tuple[int, int, int]:
    """Factors drawn the way the agent does (`int(rand(65433))+1+int(rand(99))`)."""
    return (random.randrange(65433) + 1 + random.randrange(99),
            random.randrange(65433) + 1 + random.randrange(99), int(time.time()))


class _Closed(Exception):
    """The client went away or broke framing; the connection is simply dropped."""


@dataclass
class TagentTestAgent:
    password: str = field(repr=False)
    secure: bool = False
    charset: str = "UTF-8"
    ostype: str = "Linux"
    host: str = "127.0.0.1"
    port: int = 0
    tmpdir: str = "/tmp"
    exec_timeout: int = 3600
    read_timeout: float = 5.0
    auth_timeout: int = 0
    challenge: ChallengeSource = random_challenge
    clock: Callable[[], float] = time.time
    stall_after_lines: int | None = None
    """Fault switch: after this many execmd output lines, send nothing more (command keeps running)."""
    stall_mid_chunk: bool = False
    """Fault switch (with ``stall_after_lines``): stall after a chunk header and half its payload."""
    requests: list[list[bytes]] = field(default_factory=list, repr=False)
    reload_count: int = 0
    pending_credential: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._children: set[subprocess.Popen[bytes]] = set()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> TagentTestAgent:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for child in list(self._children):
                _kill_session(child)
        for thread in self._threads:
            thread.join(timeout=2)

    def kill(self) -> None:
        """Fault switch: die as a SIGKILLed agent would, mid-whatever: the port stops answering,
        every open connection is reset and the commands it runs are killed."""
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            connections, self._connections = set(self._connections), set()
            children = list(self._children)
        for sock in connections:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()  # a reset, not an orderly end
            except OSError:
                pass
        for child in children:
            _kill_session(child)

    def __enter__(self) -> TagentTestAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._spawn(self.serve_connection, conn)

    # -- framing -------------------------------------------------------------------------
    def _crypt(self, data: bytes) -> bytes:
        return rc4(self.password.encode("latin-1"), data) if self.secure and data else data

    def _recv_exact(self, sock: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            ready, _, _ = select.select([sock], [], [], self.read_timeout)
            if not ready:
                raise _Closed("read timeout")
            piece = sock.recv(n - len(buf))
            if not piece:
                raise _Closed("connection closed")
            buf += piece
        return buf

    def _read_chunk(self, sock: socket.socket, encrypted: bool = True) -> bytes | None:
        (length,) = struct.unpack(">H", self._recv_exact(sock, 2))
        if length == 0:
            return None
        payload = self._recv_exact(sock, length)
        return self._crypt(payload) if encrypted else payload

    def _write_chunk(self, sock: socket.socket, payload: bytes, encrypted: bool = True) -> None:
        data = self._crypt(payload) if encrypted else payload
        sock.sendall(struct.pack(">H", len(data)) + data)

    def _finish(self, sock: socket.socket, trailer: bytes = b"") -> None:
        sock.sendall(b"\0\0" + self._crypt(trailer))
        sock.shutdown(socket.SHUT_WR)

    # -- connection ----------------------------------------------------------------------
    def serve_connection(self, sock: socket.socket) -> None:
        """Handle one connection exactly like an agent child: auth, one request, close."""
        with self._lock:
            self._connections.add(sock)
        try:
            if self._authenticate(sock):
                self._dispatch(sock)
        except (_Closed, OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._connections.discard(sock)
            sock.close()

    def _authenticate(self, sock: socket.socket) -> bool:
        f1, f2, epoch = self.challenge()
        key = self.password.encode("latin-1")
        challenge = rc4(key, f"{f1},{f2},{epoch}".encode()).hex()
        protocol = "Tagent1.1s" if self.secure else "Tagent1.1"
        self._write_chunk(sock, f"{self.ostype}|{self.charset}|{challenge}|{protocol}".encode(), encrypted=False)
        response = self._read_chunk(sock)
        ok = False
        if response is not None:
            try:
                parts = rc4(key, bytes.fromhex(response.decode("latin-1").lstrip())).decode("latin-1").split(",")
                limit = self.auth_timeout or 10 * 365 * 86400
                ok = int(parts[0]) == f1 * f2 and abs(self.clock() - int(parts[1])) < limit
            except (ValueError, IndexError):
                ok = False
        self._write_chunk(sock, b"auth succeed" if ok else b"auth failed")
        if not ok:
            sock.shutdown(socket.SHUT_WR)
        return ok

    def _dispatch(self, sock: socket.socket) -> None:
        raw = self._read_chunk(sock)
        fields = (raw or b"").lstrip().split(b"|")
        while fields and fields[-1] == b"":
            fields.pop()  # Perl split drops trailing empty fields
        if len(fields) < 4:
            peer = sock.getpeername() if sock.family == socket.AF_INET else ("local", 0)
            self._finish(sock, f"request protocol error, separate request failed, client:{peer[0]}:{peer[1]}.".encode())
            return
        try:
            args = [bytes.fromhex(f.decode("latin-1")) for f in fields[3:]]
        except ValueError:
            args = [b""]  # Perl's pack('H*') turns garbage into garbage; an empty arg is as good
        self.requests.append(fields[:3] + args)
        user, command = fields[0].decode("latin-1"), fields[1].decode("latin-1")
        if command != "reload" and user not in ("root", "none"):
            try:
                pwd.getpwnam(user)
            except KeyError:
                self._finish(sock, f"Get uid from [{user}] failed, user not exists.".encode())
                return
        handler = {"execmd": self._execmd, "execmdasync": self._execmdasync, "upload": self._upload,
                   "download": self._download, "echo": self._echo, "reload": self._reload,
                   "updatecred": self._updatecred}.get(command)
        if handler is not None:
            handler(sock, args)

    # -- helpers -------------------------------------------------------------------------
    def _env(self, env_json: bytes) -> dict[str, str]:
        env = dict(os.environ, TMPDIR=self.tmpdir)
        if env_json:
            env.update({str(k): str(v) for k, v in json.loads(env_json.decode(self.charset)).items()})
        return env

    def _substitute(self, cmd: bytes) -> bytes:
        tmp = self.tmpdir.encode(self.charset)
        for token in (b"$TMPDIR", b"%TMPDIR%"):
            cmd = cmd.replace(token, tmp)
        return cmd

    def _expand(self, raw: bytes) -> bytes:
        env = self._env(b"")
        text = raw.decode(self.charset).replace("\\", "/")
        text = re.sub(r"\$\{(\w+)\}|\$(\w+)|%(\w+)%",
                      lambda m: env.get(m.group(1) or m.group(2) or m.group(3), ""), text)
        return text.encode(self.charset)

    def _launch(self, cmd: bytes, env: dict[str, str], stdout: int) -> subprocess.Popen[bytes]:
        child = subprocess.Popen([b"/bin/sh", b"-c", self._substitute(cmd)], stdin=subprocess.DEVNULL,
                                 stdout=stdout, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        with self._lock:
            self._children.add(child)
        return child

    def _forget(self, child: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._children.discard(child)

    # -- commands ------------------------------------------------------------------------
    def _execmd(self, sock: socket.socket, args: list[bytes]) -> None:
        cmd = args[0]
        eof_regex = args[1] if len(args) > 1 else b""
        env_json = args[2] if len(args) > 2 else b""
        timeout = int(args[3] or b"0") if len(args) > 3 and args[3].strip().isdigit() else 0
        timeout = timeout or self.exec_timeout
        try:
            child = self._launch(cmd, self._env(env_json), subprocess.PIPE)
        except OSError as err:
            self._finish(sock, f"Launch '{cmd.decode(self.charset, 'replace')}' failed: {err.strerror}".encode())
            return
        try:
            self._pump(sock, child, timeout, eof_regex)
        finally:
            _kill_session(child)
            child.wait()
            self._forget(child)

    def _pump(self, sock: socket.socket, child: subprocess.Popen[bytes], timeout: int, eof_regex: bytes) -> None:
        assert child.stdout is not None
        out_fd = child.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf, sent, finish_seen = b"", 0, False
        pattern = re.compile(eof_regex) if eof_regex else None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                _kill_session(child)
                self._finish(sock, f"execute timeout({timeout} seconds)".encode())
                return
            ready, _, _ = select.select([out_fd, sock], [], [], min(left, 0.5))
            if sock in ready:
                return  # any data or EOF from the client aborts the command (killed in finally)
            if out_fd not in ready:
                continue
            data = os.read(out_fd, 65536)
            *complete, buf = (buf + data).split(b"\n")
            pieces = [line + b"\n" for line in complete]
            if not data and buf:
                pieces.append(buf)
            for line in pieces:
                if finish_seen:
                    status = line.strip().decode() or "0"
                    self._finish(sock, b"" if status == "0" else status.encode())
                    return
                if line == b"\x1b[[-=-exec finish-=-\x1b]]\r\n":
                    finish_seen = True
                    continue
                for off in range(0, len(line), LINE_MAX):
                    if self.stall_after_lines is not None and sent >= self.stall_after_lines:
                        self._stall(sock, line[off:off + LINE_MAX])
                        return
                    self._write_chunk(sock, line[off:off + LINE_MAX])
                sent += 1
                if pattern is not None and pattern.search(line.rstrip(b"\r\n")):
                    self._finish(sock)
                    return
            if not data:
                break
        child.wait()
        code = child.returncode
        status = -code if code < 0 else code  # wait status of a signalled child is the signal number
        self._finish(sock, b"" if status == 0 else str(status).encode())

    def _stall(self, sock: socket.socket, line: bytes) -> None:
        if self.stall_mid_chunk:
            data = self._crypt(line)
            sock.sendall(struct.pack(">H", len(data)) + data[: len(data) // 2])
        while not self._stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.1)
            if ready:
                return

    def _execmdasync(self, sock: socket.socket, args: list[bytes]) -> None:
        env_json = args[2] if len(args) > 2 else b""
        try:
            child = self._launch(args[0], self._env(env_json), subprocess.DEVNULL)
        except OSError as err:
            self._finish(sock, f"Launch asynchronized '{args[0].decode(self.charset, 'replace')}' failed: "
                               f"{err.strerror}".encode())
            return
        self._finish(sock)
        self._spawn(self._reap, child)

    def _reap(self, child: subprocess.Popen[bytes]) -> None:
        child.wait()
        self._forget(child)

    def _upload(self, sock: socket.socket, args: list[bytes]) -> None:
        file_type, src, dest = (args + [b"", b"", b""])[:3]
        name = os.path.basename(src.replace(b"\\", b"/").rstrip(b"/"))
        dest = self._expand(dest)
        if file_type not in (b"file", b"dir", b"windir"):
            self._finish(sock, file_type + b" not supported.")
            return
        if file_type == b"file":
            if os.path.isdir(dest) or dest.endswith(b"/"):
                dest = dest.rstrip(b"/") + b"/" + name
        elif dest.endswith(b"/"):
            dest = dest.rstrip(b"/") if dest.rstrip(b"/").endswith(b"/" + name) else dest + name
        parent = os.path.dirname(dest) or b"."
        if not os.path.isdir(parent):
            self._finish(sock, parent + b" not exists.")
            return
        self._write_chunk(sock, b"Status:200")
        if file_type == b"file":
            self._receive_file(sock, dest)
        else:
            self._receive_tar(sock, dest)

    def _receive_file(self, sock: socket.socket, dest: bytes) -> None:
        try:
            with open(dest, "wb") as fh:
                while (chunk := self._read_chunk(sock)) is not None:
                    fh.write(chunk)
        except _Closed:
            os.unlink(dest)
            raise
        self._finish(sock)

    def _receive_tar(self, sock: socket.socket, dest: bytes) -> None:
        os.makedirs(dest, exist_ok=True)
        tar = subprocess.Popen(["tar", "xiBf", "-"], cwd=dest, stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert tar.stdin is not None and tar.stderr is not None
        try:
            while (chunk := self._read_chunk(sock)) is not None:
                tar.stdin.write(chunk)
        finally:
            tar.stdin.close()
            err = tar.stderr.read()
            tar.wait()
        self._finish(sock, b"" if tar.returncode == 0 else b"execute tar failed\n" + err)

    def _download(self, sock: socket.socket, args: list[bytes]) -> None:
        raw = args[0] if args else b""
        if not raw.strip():
            self._finish(sock, b"blank download path.")
            return
        path = self._expand(raw)
        matches = sorted(glob.glob(path)) if glob.has_magic(path) else ([path] if os.path.exists(path) else [])
        if not matches:
            self._finish(sock, path + b" not exists.")
        elif len(matches) > 1:
            self._write_chunk(sock, b"Status:200,FileType:multiple," + b"|".join(matches))
            self._finish(sock)
        elif os.path.isdir(matches[0]):
            self._write_chunk(sock, b"Status:200,FileType:dir")
            tar = subprocess.run(["tar", "chf", "-", "."], cwd=matches[0], capture_output=True)
            self._send_data(sock, tar.stdout)
            self._finish(sock, b"" if tar.returncode == 0 else tar.stderr)
        else:
            self._write_chunk(sock, b"Status:200,FileType:file")
            with open(matches[0], "rb") as fh:
                self._send_data(sock, fh.read())
            self._finish(sock)

    def _send_data(self, sock: socket.socket, data: bytes) -> None:
        for off in range(0, len(data), LINE_MAX):
            self._write_chunk(sock, data[off:off + LINE_MAX])

    def _echo(self, sock: socket.socket, args: list[bytes]) -> None:
        self._write_chunk(sock, args[0])
        sock.shutdown(socket.SHUT_WR)

    def _reload(self, sock: socket.socket, args: list[bytes]) -> None:
        # The answer is encrypted with this session's (old) key, but the new credential takes
        # effect before it is sent: a client reconnecting right after "Status:200" must already be
        # challenged with the new one, as with a restarted real agent.
        answer = self._crypt(b"Status:200")
        if self.pending_credential is not None:
            self.password, self.pending_credential = self.pending_credential, None
        self.reload_count += 1
        sock.sendall(struct.pack(">H", len(answer)) + answer)
        sock.shutdown(socket.SHUT_WR)

    def _updatecred(self, sock: socket.socket, args: list[bytes]) -> None:
        new = args[0].decode(self.charset).strip()
        if new.startswith("{ENCRYPTED}"):
            try:
                new = rc4(self.password.encode("latin-1"), bytes.fromhex(new[11:])).decode("latin-1")
            except ValueError:
                self._finish(sock, b"Invalid encrypted credential")
                return
        self.pending_credential = new
        self._finish(sock)


def _kill_session(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
