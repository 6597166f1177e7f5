"""Single-channel staging for :class:`~autoexec.transports.ssh.SshTransport`.

Small uploads travel inside the script fed on the exec channel's stdin, and fetched files come
back on stdout as framed, checksummed records that nothing the target prints can forge; what the
inline path cannot do falls back to SFTP. Framing rules: docs/design.md."""
from __future__ import annotations

import binascii
import os
import posixpath
import re
import secrets
import stat
import threading
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, IO

from autoexec.transports.base import LineSink, RemoteOp, fetch_plan, local_fetch_path
from autoexec.transports.decoding import DEFAULT_CHARSETS, LineSplitter
from autoexec.transports.ssh_common import quote

INLINE_LIMIT = 512 * 1024
"""Largest total size of an op's uploads that travels inside the script (bytes)."""
INLINE_MAX_FILES = 256
PIDFILE = ".autoexec.pid"
"""In the op root: the group id of the running command, for kills (``ssh_exec`` writes it)."""
B64_TOOLS = ("base64", "openssl base64")
"""Tried in order on the target; a test may replace them to simulate a host without any."""
END_OF_SCRIPT = "#AXEND"


@dataclass
class InlinePlan:
    root: str = ""
    dirs: list[str] = field(default_factory=list)
    files: list[tuple[str, bytes, int]] = field(default_factory=list)
    """(remote path, content, mode)."""
    dir_modes: list[tuple[str, int]] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)


def plan_inline(op: RemoteOp, rundir: str) -> InlinePlan | None:
    """What to create on the target, or ``None`` when the uploads are too big to inline."""
    limit = INLINE_LIMIT
    plan = InlinePlan(root=op.root)
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

    Prints ``<nonce>:X:tools`` or ``<nonce>:X:stage`` and exits 0 when it cannot; while it runs,
    stderr goes to stdout so the line before ``X:stage`` is the failing step's own message."""
    out = [f"N={nonce}", "ax_x() { printf '%s:X:%s\\n' \"$N\" \"$1\"; exit 0; }", "exec 3>&2 2>&1"]
    if with_b64:
        choose = "".join(
            f"{'if' if i == 0 else 'elif'} command -v {tool.split()[0]} >/dev/null 2>&1; "
            f"then ax_b() {{ {tool} \"$@\"; }}; "
            for i, tool in enumerate(B64_TOOLS))
        out.append(choose + "else ax_x tools; fi")
    out.append("mkdir -p " + " ".join(quote(d) for d in plan.dirs) + " || ax_x stage")
    for remote, data, _mode in plan.files:
        text = _as_text(data)
        if text is not None:
            out.append(f"printf '%s' {quote(text)} >{quote(remote)} || ax_x stage")
        else:
            end = f"AXB{nonce}"
            encoded = binascii.b2a_base64(data, newline=False).decode()
            body = "\n".join(encoded[i:i + 64] for i in range(0, len(encoded), 64))
            out.append(f"ax_b -d >{quote(remote)} <<'{end}' || ax_x stage\n{body}\n{end}")
    for target in plan.empty:
        out.append(f": >{quote(target)} || ax_x stage")
    # The pid file the command's group id goes to, written now with room for any pid: on a full
    # file system this step fails with the host's reason instead of the command not starting.
    out.append(f"printf '%s\\n' 0000000000 >{quote(posixpath.join(plan.root, PIDFILE))} || ax_x stage")
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
    out.append("exec 2>&3 3>&-")
    return "\n".join(out) + "\n"


def _chmods(items: list[tuple[str, int, int]]) -> str:
    by_mode: dict[int, list[str]] = {}
    for path, mode, _created in items:
        by_mode.setdefault(mode, []).append(path)
    return " && ".join(f"chmod {mode:o} " + " ".join(quote(p) for p in paths)
                       for mode, paths in by_mode.items()) + (" || ax_x stage" if by_mode else "")


def fetch_function() -> str:
    """``ax_e PATH ID``: send one fetched file as a checked record; ``ax_k=1`` keeps the root for
    an SFTP follow-up (a directory, or no gzip on the host)."""
    return (
        "ax_k=0; if command -v gzip >/dev/null 2>&1; then ax_z=1; else ax_z=0; fi\n"
        "ax_e() { if [ $ax_z = 1 ] && [ -f \"$1\" ]; then printf '%s:F:%s\\n' \"$N\" \"$2\"; "
        "gzip -1 -c 2>/dev/null <\"$1\" | ax_b 2>/dev/null; printf '%s:E:%s\\n' \"$N\" \"$2\"; "
        "elif [ -e \"$1\" ]; then printf '%s:S:%s\\n' \"$N\" \"$2\"; ax_k=1; fi; }\n"
    )


WAIT_FOR_ANSWER = 'printf \'%s:W\\n\' "$N"'
"""Shell text asking the reader for its answer (more ``ax_e`` lines, or the end line)."""

_BASE64_LINE = re.compile(rb"[A-Za-z0-9+/]*={0,2}\Z")


class _Record:
    """One fetched file arriving as ``gzip | base64`` lines, written out as it comes and checked
    (gzip's CRC-32 and length) at its end marker."""

    def __init__(self, index: int, rel: str, local: Path, handle: IO[bytes]) -> None:
        self.index = index
        self.rel = rel
        self.local = local
        self.handle = handle
        self.inflate = zlib.decompressobj(wbits=31)
        self.pending = b""
        self.broken = False

    def data(self, line: bytes) -> None:
        if self.broken:
            return
        pending = self.pending + line
        cut = len(pending) // 4 * 4
        self.pending = pending[cut:]
        try:
            self.handle.write(self.inflate.decompress(binascii.a2b_base64(pending[:cut])))
        except (binascii.Error, zlib.error):
            self.broken = True

    def complete(self) -> bool:
        """Whether every byte came through: the gzip stream ended, its checks passed, and
        nothing followed it."""
        self.handle.close()
        return (not self.broken and not self.pending and self.inflate.eof
                and not self.inflate.unused_data)


class InlineReader:
    """Splits the channel's stdout into tool lines (to ``on_line``) and the records above."""

    def __init__(self, nonce: str, on_line: LineSink, op: RemoteOp, rundir: str, end_line: str,
                 output_charsets: tuple[str, ...] = DEFAULT_CHARSETS) -> None:
        self.marker = f"{nonce}:".encode()
        self.end_line = end_line
        """Ends the host's wait for an answer (also the last line of the script text, which the
        bootstrap reads up to)."""
        self.on_line = on_line
        self.op = op
        self.rundir = rundir
        self.lines = LineSplitter(output_charsets)
        self.finished = False
        """The command ended (``R`` marker seen)."""
        self.fallback: str | None = None
        """``tools`` or ``stage`` when the script gave up before running the command."""
        self.stage_error = ""
        """With ``fallback == "stage"``: the host's message for the step that failed."""
        self.names: list[str] = list(op.fetch)
        self.fetched: dict[str, Path] = {}
        self.sftp_needed: list[str] = []
        self.garbled: list[str] = []
        """Files whose record did not check out (fetched again over SFTP)."""
        self.more_after_sftp = False
        """The second fetch round still has to be asked for, once SFTP brought the first."""
        self.error: str | None = None
        self.last_round = False
        """The reader's last answer is out: the host goes on to its cleanup and exits."""
        self._round = 0
        self._recent: deque[bytes] = deque(maxlen=3)
        self._current: _Record | None = None
        self.send: Callable[[bytes], None] = lambda _data: None
        """Writes to the channel's stdin (set by the transport)."""

    def feed(self, data: bytes) -> None:
        for raw in self.lines.feed_raw(data):
            self._line(raw)

    def close(self) -> None:
        raw = self.lines.flush_raw()
        if raw is not None:
            self._line(raw)
        if self._current is not None:
            self._close_record(None)

    def _emit(self, raw: bytes) -> None:
        self.on_line(self.lines.decode(raw))

    def _line(self, raw: bytes) -> None:
        at = raw.find(self.marker)
        if at < 0:
            if self._current is not None and _BASE64_LINE.match(raw):
                self._current.data(raw)
            else:
                self._emit(raw)  # the tool's, or a process it left running, or the shell's
                if not self.finished:
                    self._recent.append(raw)
            return
        if at:
            self._emit(raw[:at])
        kind, _, arg = raw[at + len(self.marker):].partition(b":")
        if not self.finished:
            if kind == b"R":
                self.finished = True
            elif kind == b"X":
                self.fallback = arg.decode(errors="replace")
                self.stage_error = " ".join(self.lines.decode(line).strip() for line in list(self._recent)[-1:])
            return
        if kind == b"W":
            if self._current is not None:
                self._close_record(None)
            self._answer()
            return
        try:
            index = int(arg)
            self.names[index]
        except (ValueError, IndexError):
            self._emit(raw[at:])  # not a record of ours after all
            return
        if kind == b"F":
            self._start(index)
        elif kind == b"E":
            self._close_record(index)
        elif kind == b"S":
            self.sftp_needed.append(self.names[index])

    def _start(self, index: int) -> None:
        if self._current is not None:
            self._close_record(None)
        rel = self.names[index]
        assert self.op.fetch_dir is not None
        local = local_fetch_path(self.op.fetch_dir, rel)
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            handle: IO[bytes] = open(local, "wb")
        except OSError as err:
            self.error = self.error or f"fetch of {rel} failed: {err.strerror or err}"
            handle = open(os.devnull, "wb")
        self._current = _Record(index, rel, local, handle)

    def _close_record(self, index: int | None) -> None:
        record, self._current = self._current, None
        if record is None:
            if index is not None:
                self._garbled(self.names[index])
            return
        try:
            complete = record.complete() and index == record.index
        except OSError as err:
            self.error = self.error or f"fetch of {record.rel} failed: {err.strerror or err}"
            return
        if complete:
            self.fetched[record.rel] = record.local
        else:
            self._garbled(record.rel)
        if index is not None and index != record.index:
            self._garbled(self.names[index])

    def _garbled(self, rel: str) -> None:
        if rel not in self.garbled:
            self.garbled.append(rel)
            self.sftp_needed.append(rel)
            self.fetched.pop(rel, None)

    def _answer(self) -> None:
        """The host waits for the next fetch round or the end line; the first round's results
        decide the second (e.g. the ``filepath`` outputs named in ``output.json``)."""
        self._round += 1
        lines: list[str] = []
        if self._round == 1 and self.op.fetch_more is not None:
            if self.garbled:
                self.more_after_sftp = True
            else:
                lines = self._second_round()
        if lines:
            lines.append(WAIT_FOR_ANSWER)
        else:
            self.last_round = True
            lines = (["ax_k=1"] if self.sftp_needed else []) + [self.end_line]
        self.send("".join(line + "\n" for line in lines).encode())

    def _second_round(self) -> list[str]:
        try:
            wanted = fetch_plan(self.op, dict(self.fetched))
        except BaseException:
            self.last_round = True
            self.send((self.end_line + "\n").encode())  # let the host finish before giving up
            raise
        lines = []
        for rel in wanted:
            if "\n" in rel or "\0" in rel or "\r" in rel:
                self.sftp_needed.append(rel)  # the host cannot take it in a line
                continue
            self.names.append(rel)
            lines.append(f"ax_e {quote(posixpath.join(self.rundir, rel))} {len(self.names) - 1}")
        return lines


def new_nonce() -> str:
    return "AXM" + secrets.token_hex(16)
