"""Single-channel staging for :class:`~autoexec.transports.ssh.SshTransport`.

When an op's uploads are small, the files travel inside the script fed on stdin of the one exec
channel instead of over an SFTP subsystem: text files as single-quoted ``printf`` arguments (a
shell builtin, no extra process), other files as base64 here-documents decoded by ``base64 -d``
(or ``openssl base64 -d``). After the command, the files to fetch come back on stdout as base64
between lines that start with a per-op random marker, which :class:`InlineReader` strips out of
the line stream before it reaches the node log. The same script then removes the op root.

Anything the inline path cannot do (no base64 tool on the target, a staging step failing, a
fetched path that is a directory) is reported with a marker, and the caller falls back to SFTP
for that part, so the outcome and the error messages are those of the SFTP path.
"""
from __future__ import annotations

import binascii
import os
import posixpath
import secrets
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, IO

from autoexec.transports.base import LineSink, RemoteOp, local_fetch_path
from autoexec.transports.ssh_common import pop_lines, quote

INLINE_LIMIT = 512 * 1024
"""Largest total size of an op's uploads that travels inside the script (bytes)."""
INLINE_MAX_FILES = 256
B64_TOOLS = ("base64", "openssl base64")
"""Tried in order on the target; a test may replace them to simulate a host without any."""
END_OF_SCRIPT = "#AXEND"


@dataclass
class InlinePlan:
    dirs: list[str] = field(default_factory=list)
    files: list[tuple[str, bytes, int]] = field(default_factory=list)
    """(remote path, content, mode)."""
    dir_modes: list[tuple[str, int]] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)


def plan_inline(op: RemoteOp, rundir: str) -> InlinePlan | None:
    """What to create on the target, or ``None`` when the uploads are too big to inline."""
    limit = INLINE_LIMIT
    plan = InlinePlan()
    total = 0

    def add_dir(path: str) -> None:
        if path not in plan.dirs:
            plan.dirs.append(path)

    def add_file(local: str, remote: str, mode: int) -> bool:
        nonlocal total
        try:
            size = os.path.getsize(local)
        except OSError:
            return False
        total += size
        if total > limit or len(plan.files) >= INLINE_MAX_FILES:
            return False
        data = _read_cached(local, limit)
        total += len(data) - size
        if total > limit:
            return False
        plan.files.append((remote, data, mode))
        return True

    add_dir(op.root)
    for upload in op.uploads:
        local = upload.local
        remote = posixpath.join(op.root, upload.remote_rel)
        if local.is_dir():
            for dirpath, dirnames, filenames in os.walk(local, followlinks=True):
                dirnames.sort()
                rel = os.path.relpath(dirpath, local)
                remote_dir = remote if rel == "." else posixpath.join(remote, *Path(rel).parts)
                add_dir(remote_dir)
                plan.dir_modes.append((remote_dir, stat.S_IMODE(os.stat(dirpath).st_mode)))
                for name in sorted(filenames):
                    path = os.path.join(dirpath, name)
                    if not os.path.isfile(path):
                        continue  # as the SFTP path: sockets, fifos, dangling links are skipped
                    if not add_file(path, posixpath.join(remote_dir, name), stat.S_IMODE(os.stat(path).st_mode)):
                        return None
            continue
        if not local.is_file():
            return None  # let the SFTP path report it
        add_dir(posixpath.dirname(remote))
        mode = upload.mode if upload.mode is not None else stat.S_IMODE(local.stat().st_mode)
        if not add_file(str(local), remote, mode):
            return None
    add_dir(rundir)
    for rel in op.create_empty:
        target = posixpath.join(rundir, rel)
        add_dir(posixpath.dirname(target))
        plan.empty.append(target)
    return plan


_cache: dict[tuple[str, int, int, int], bytes] = {}
_cache_lock = threading.Lock()
_CACHE_BYTES = 4 * 1024 * 1024


def _read_cached(path: str, limit: int) -> bytes:
    """File content, remembered while unchanged: a phase ships the same lib and tool to every node."""
    st = os.stat(path)
    key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
    with _cache_lock:
        data = _cache.get(key)
    if data is None:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
        with _cache_lock:
            if sum(len(v) for v in _cache.values()) + len(data) > _CACHE_BYTES:
                _cache.clear()
            _cache[key] = data
    return data


def _as_text(data: bytes) -> str | None:
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def needs_b64(plan: InlinePlan, op: RemoteOp) -> bool:
    return bool(op.fetch) or any(_as_text(data) is None for _, data, _ in plan.files)


def staging_script(plan: InlinePlan, nonce: str, with_b64: bool) -> str:
    """Shell text that checks for a base64 tool (if needed) and creates everything in ``plan``.

    Prints ``<nonce>:X:tools`` or ``<nonce>:X:stage`` and exits 0 when it cannot."""
    out = [f"N={nonce}", "ax_x() { printf '%s:X:%s\\n' \"$N\" \"$1\"; exit 0; }"]
    if with_b64:
        choose = "".join(
            f"{'if' if i == 0 else 'elif'} command -v {tool.split()[0]} >/dev/null 2>&1; "
            f"then ax_b() {{ {tool} \"$@\"; }}; "
            for i, tool in enumerate(B64_TOOLS))
        out.append(choose + "else ax_x tools; fi")
    out.append("mkdir -p " + " ".join(quote(d) for d in plan.dirs) + " 2>/dev/null || ax_x stage")
    for remote, data, _mode in plan.files:
        text = _as_text(data)
        if text is not None:
            out.append(f"printf '%s' {quote(text)} 2>/dev/null >{quote(remote)} || ax_x stage")
        else:
            end = f"AXB{nonce}"
            encoded = binascii.b2a_base64(data, newline=False).decode()
            body = "\n".join(encoded[i:i + 64] for i in range(0, len(encoded), 64))
            out.append(f"ax_b -d 2>/dev/null >{quote(remote)} <<'{end}' || ax_x stage\n{body}\n{end}")
    for target in plan.empty:
        out.append(f"printf '' 2>/dev/null >{quote(target)} || ax_x stage")
    # Modes are set exactly, as the SFTP path does; with the usual umask 022 most of them already
    # are, and skipping those chmods spares a process each on the host.
    items = [(remote, mode, 0o666) for remote, _data, mode in plan.files]
    items += [(path, mode, 0o777) for path, mode in reversed(plan.dir_modes)]  # directories last
    full = _chmods(items)
    fast = _chmods([item for item in items if item[2] & ~0o022 != item[1]])
    if fast != full:
        out.append(f"case $(umask) in 0022|022) {fast or ':'};; *) {full};; esac")
    elif full:
        out.append(full)
    return "\n".join(out) + "\n"


def _chmods(items: list[tuple[str, int, int]]) -> str:
    by_mode: dict[int, list[str]] = {}
    for path, mode, _created in items:
        by_mode.setdefault(mode, []).append(path)
    return " && ".join(f"chmod {mode:o} " + " ".join(quote(p) for p in paths) + " 2>/dev/null"
                       for mode, paths in by_mode.items()) + (" || ax_x stage" if by_mode else "")


def fetch_function() -> str:
    """``ax_e PATH ID``: emit one fetched file between markers; ``ax_k=1`` asks for SFTP follow-up."""
    return (
        "ax_k=0\n"
        "ax_e() { if [ -f \"$1\" ]; then printf '%s:F:%s\\n' \"$N\" \"$2\"; ax_b <\"$1\" 2>/dev/null; "
        "ax_s=$?; printf '%s:E:%s\\n' \"$N\" \"$ax_s\"; [ $ax_s -eq 0 ] || ax_k=1; "
        "elif [ -e \"$1\" ]; then printf '%s:S:%s\\n' \"$N\" \"$2\"; ax_k=1; fi; }\n"
    )


class InlineError(Exception):
    pass


class InlineReader:
    """Splits the channel's byte stream into tool lines (to ``on_line``) and marker records."""

    def __init__(self, nonce: str, on_line: LineSink, op: RemoteOp,
                 more: Callable[["InlineReader"], None] | None = None) -> None:
        self.marker = f"{nonce}:".encode()
        self.on_line = on_line
        self.op = op
        self.more = more
        self.buffer = bytearray()
        self.finished = False
        """The command ended (``R`` marker seen)."""
        self.fallback: str | None = None
        """``tools`` or ``stage`` when the script gave up before running the command."""
        self.names: list[str] = list(op.fetch)
        self.fetched: dict[str, Path] = {}
        self.sftp_needed: list[str] = []
        self.error: str | None = None
        self._current: tuple[str, Path, IO[bytes]] | None = None
        self._pending = b""
        self.send: Callable[[bytes], None] = lambda _data: None
        """Writes to the channel's stdin and closes it (set by the transport)."""

    def feed(self, data: bytes) -> None:
        self.buffer.extend(data)
        for raw in pop_lines(self.buffer):
            self._line(raw)

    def close(self) -> None:
        if self.buffer:
            raw = bytes(self.buffer).rstrip(b"\r")
            self.buffer.clear()
            self._line(raw)
        if self._current is not None:
            self._end(b"1")

    def _emit(self, raw: bytes) -> None:
        self.on_line(raw.decode("utf-8", errors="replace"))

    def _line(self, raw: bytes) -> None:
        if not self.finished:
            at = raw.find(self.marker)
            if at < 0:
                self._emit(raw)
                return
            kind = raw[at + len(self.marker):at + len(self.marker) + 2]
            if kind == b"R:":
                if at:
                    self._emit(raw[:at])
                self.finished = True
            elif kind == b"X:" and at == 0:
                self.fallback = raw[at + len(self.marker) + 2:].decode(errors="replace")
            else:
                self._emit(raw)
            return
        if not raw.startswith(self.marker):
            if self._current is not None:
                self._data(raw)
            else:
                self._emit(raw)  # output of something the command left running
            return
        kind, _, arg = raw[len(self.marker):].partition(b":")
        if kind == b"F":
            self._start(int(arg))
        elif kind == b"E":
            self._end(arg)
        elif kind == b"S":
            self.sftp_needed.append(self.names[int(arg)])
        elif kind == b"W" and self.more is not None:
            self.more(self)

    def _start(self, index: int) -> None:
        rel = self.names[index]
        assert self.op.fetch_dir is not None
        local = local_fetch_path(self.op.fetch_dir, rel)
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            handle = open(local, "wb")
        except OSError as err:
            self.error = self.error or f"fetch of {rel} failed: {err.strerror or err}"
            handle = open(os.devnull, "wb")
        self._current = (rel, local, handle)
        self._pending = b""

    def _data(self, raw: bytes) -> None:
        assert self._current is not None
        pending = self._pending + raw.strip()
        cut = len(pending) // 4 * 4
        self._pending = pending[cut:]
        try:
            self._current[2].write(binascii.a2b_base64(pending[:cut]))
        except (binascii.Error, OSError) as err:
            self.error = self.error or f"fetch of {self._current[0]} failed: {err}"

    def _end(self, status: bytes) -> None:
        assert self._current is not None
        rel, local, handle = self._current
        self._current = None
        handle.close()
        if status.strip() != b"0" or self._pending:
            self.error = self.error or f"fetch of {rel} failed: could not read it on the host"
            return
        if self.error is None:
            self.fetched[rel] = local


def new_nonce() -> str:
    return "AXM" + secrets.token_hex(16)
