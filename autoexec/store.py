"""Per-node status and outputs on disk: the source of truth for resume (§9.2, §10.9).

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
from pathlib import Path
from typing import Any, Iterator, Protocol


class Mirror(Protocol):
    def save_node_status(self, job_id: str, phase: str, node: Any, data: dict) -> None: ...
    def load_node_status(self, job_id: str, phase: str, resource_id: int) -> dict | None: ...
    def save_node_output(self, job_id: str, node: Any, data: dict) -> None: ...
    def load_node_output(self, job_id: str, resource_id: int) -> dict | None: ...


def _open_creating_dirs(path: Path, mode: str) -> Any:
    """Status and output files are written several times per node: try first, mkdir on demand."""
    try:
        return open(path, mode, encoding="utf-8")
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, mode, encoding="utf-8")


def write_json_atomic(path: Path, data: Any, indent: int | None = None) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    text = json.dumps(data, ensure_ascii=False, indent=indent)
    try:
        with _open_creating_dirs(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """In-process lock plus ``flock`` on ``<path>.lock``: oneShot phases may update the same node's
    output concurrently, and another invocation of the job may too."""
    key = str(path)
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        lock_path = path.with_name(f".{path.name}.lock")
        with _open_creating_dirs(lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


class NodeStatus:
    """``status/<phase>/<triple>.json``: ``{"pid", "interact", "status", "warnCount", <opId>: s, "currenOp", "opPid"}``."""

    def __init__(self, path: Path, job_id: str, phase: str, node: Any, mirror: Mirror | None = None) -> None:
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
        return str(self.data.get("status") or "pending")

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
        raw = json.dumps(self.data, ensure_ascii=False).encode("utf-8")
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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

    def set_interact(self, status: str, interact: dict | None) -> bool:
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
        self.data.setdefault("status", "running")
        self.data.setdefault("warnCount", 0)
        self._save()


class NodeOutput:
    """``output/<triple>.json``: ``{"nodeEnv": {}, "hiddenNodeEnv": {}, <opId>: {...}}`` across phases."""

    def __init__(self, path: Path, job_id: str, node: Any, mirror: Mirror | None = None) -> None:
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
