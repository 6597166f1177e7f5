"""Per-node status and outputs on disk: the source of truth for resume.

Files are replaced atomically (write a temp file, then rename), so a reader — the runner service,
another invocation, a crash — never sees half a document. A mirror (MongoDB) may be attached; it
is written after the local file and never decides success.
"""
from __future__ import annotations

import fcntl
import json
import os
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Protocol

from autoexec.jobdir.fileio import open_fd_creating_dirs, read_bytes, write_all
from autoexec.models.status import Status


class Mirror(Protocol):
    def save_node_status(self, job_id: str, phase: str, node: Any, data: dict[str, Any]) -> None: ...
    def load_node_status(self, job_id: str, phase: str, resource_id: int) -> dict[str, Any] | None: ...
    def save_node_output(self, job_id: str, node: Any, data: dict[str, Any]) -> None: ...
    def load_node_output(self, job_id: str, resource_id: int) -> dict[str, Any] | None: ...


_ENCODERS: dict[int | None, json.JSONEncoder] = {}


def dumps(data: Any, indent: int | None = None) -> str:
    """``json.dumps(data, ensure_ascii=False, indent=indent)`` (same text) through a reused
    encoder: ``json.dumps`` with any non-default argument builds a new encoder per call."""
    encoder = _ENCODERS.get(indent)
    if encoder is None:
        encoder = _ENCODERS[indent] = json.JSONEncoder(ensure_ascii=False, indent=indent)
    return encoder.encode(data)


def ensure_dir(path: str) -> bool:
    """``Path(path).mkdir(parents=True, exist_ok=True)`` without building a ``Path``: one
    ``mkdir`` when it is new, ``mkdir`` + ``stat`` when it exists. ``True`` if it was created
    (so it is known to be empty)."""
    try:
        os.mkdir(path)
        return True
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return False
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)
        return True


def _sibling(path: str | os.PathLike[str], prefix: str, suffix: str) -> str:
    """``<dir>/<prefix><name><suffix>`` next to ``path`` (temp and lock files)."""
    head, name = os.path.split(os.fspath(path))
    return os.path.join(head, f"{prefix}{name}{suffix}")


def write_json_atomic(path: str | os.PathLike[str], data: Any, indent: int | None = None) -> None:
    tmp = _sibling(path, ".", f".{os.getpid()}.{threading.get_ident()}.tmp")
    raw = dumps(data, indent).encode("utf-8")
    try:
        fd = open_fd_creating_dirs(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            write_all(fd, raw)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_json(path: str | os.PathLike[str]) -> Any | None:
    """``None`` for a missing, unreadable-as-UTF-8 or invalid document (a UTF-8 BOM is invalid,
    as with a text-mode read)."""
    try:
        return json.loads(read_bytes(path).decode("utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """In-process lock plus ``flock`` on ``<path>.lock``: oneShot phases may update the same node's
    output concurrently, and another invocation of the job may too."""
    key = os.fspath(path)
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        fd = open_fd_creating_dirs(_sibling(key, ".", ".lock"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


class NodeStatus:
    """``status/<phase>/<triple>.json``: ``{"pid", "interact", "status", "warnCount", <opId>: s, "currenOp", "opPid"}``."""

    def __init__(self, path: str | os.PathLike[str], job_id: str, phase: str, node: Any,
                 mirror: Mirror | None = None) -> None:
        self.path = path
        self.job_id = job_id
        self.phase = phase
        self.node = node
        self.mirror = mirror
        data = read_json(path)
        if data is None and mirror is not None:
            data = mirror.load_node_status(job_id, phase, node.resourceId)
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        self._fd: int | None = None
        self._size = 0

    @property
    def status(self) -> str:
        return str(self.data.get("status") or Status.PENDING)

    def op_status(self, op_id: str) -> str | None:
        value = self.data.get(op_id)
        return value if isinstance(value, str) else None

    def _save(self) -> None:
        """Rewritten in place through one open descriptor, as the original keeps it open: a status
        file changes four or more times per node, and create+rename in a directory shared by
        thousands of nodes costs far more than one ``pwrite``. The new JSON is padded with spaces
        to the previous length, so the file never holds an invalid document (JSON allows trailing
        white space) and no truncate is needed."""
        self.data["pid"] = os.getpid()
        raw = dumps(self.data).encode("utf-8")
        if self._fd is None:
            self._fd = open_fd_creating_dirs(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._size = os.fstat(self._fd).st_size
        if len(raw) < self._size:
            raw = raw.ljust(self._size)
        os.pwrite(self._fd, raw, 0)
        self._size = len(raw)
        if self.mirror is not None:
            self.mirror.save_node_status(self.job_id, self.phase, self.node, dict(self.data))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def set_status(self, status: str, warn_count: int | None = None) -> bool:
        """Returns False (and writes nothing) when the status is unchanged, as the original."""
        if self.data.get("status") == status and warn_count in (None, self.data.get("warnCount")):
            return False
        self.data["status"] = status
        self.data["interact"] = None
        if warn_count is not None:
            self.data["warnCount"] = warn_count
        self.data.setdefault("warnCount", 0)
        self._save()
        return True

    def set_interact(self, status: str, interact: dict[str, Any] | None) -> bool:
        """A tool waits for a human (``waitInput`` with the question) or got its answer (``running``)."""
        changed = self.data.get("status") != status
        self.data["status"] = status
        self.data["interact"] = interact
        self.data.setdefault("warnCount", 0)
        self._save()
        return changed

    def set_op(self, op_id: str, status: str, op_pid: int | None = None) -> None:
        self.data[op_id] = status
        self.data["currenOp"] = op_id
        self.data["opPid"] = op_pid
        self.data["interact"] = None
        self.data.setdefault("status", Status.RUNNING)
        self.data.setdefault("warnCount", 0)
        self._save()


class NodeOutput:
    """``output/<triple>.json``: ``{"nodeEnv": {}, "hiddenNodeEnv": {}, <opId>: {...}}`` across phases."""

    def __init__(self, path: str | os.PathLike[str], job_id: str, node: Any, mirror: Mirror | None = None) -> None:
        self.path = path
        self.job_id = job_id
        self.node = node
        self.mirror = mirror
        self.data = self._load()

    def _load(self) -> dict[str, Any]:
        data = read_json(self.path)
        if data is None and self.mirror is not None:
            data = self.mirror.load_node_output(self.job_id, self.node.resourceId)
        data = data if isinstance(data, dict) else {}
        data.setdefault("nodeEnv", {})
        data.setdefault("hiddenNodeEnv", {})
        return data

    def update(self, changes: dict[str, Any], removed: tuple[str, ...] = ()) -> None:
        """Merge under lock with what is on disk, so concurrent phases don't drop each other's keys."""
        with file_lock(self.path):
            current = read_json(self.path)
            current = current if isinstance(current, dict) else dict(self.data)
            current.setdefault("nodeEnv", {})
            current.setdefault("hiddenNodeEnv", {})
            for key, value in changes.items():
                if key in ("nodeEnv", "hiddenNodeEnv") and isinstance(value, dict):
                    current[key] = {**current.get(key, {}), **value}
                else:
                    current[key] = value
            for key in removed:
                current.pop(key, None)
            write_json_atomic(self.path, current, indent=4)
            self.data = current
        if self.mirror is not None:
            self.mirror.save_node_output(self.job_id, self.node, dict(current))
