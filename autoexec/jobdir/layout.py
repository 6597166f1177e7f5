"""The job directory contract shared with the neatlogic runner service.

The Java runner service reads these files by name, so names and shapes follow the original
exactly. Every name derived from console input (job id, phase, host, op id) goes through
:func:`safe_name` / :func:`safe_relpath` so that nothing a console or nodes file says can write
outside the job directory.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from autoexec.conf.errors import AutoexecError

_UNSAFE = re.compile(r"[/\\\x00-\x1f]")


class UnsafeName(AutoexecError, ValueError):
    pass


def split_job_id(job_id: str) -> str:
    """``624490098515988`` -> ``624/490/098/515/988`` (3-character chunks, as the original splits it)."""
    if not re.fullmatch(r"[0-9A-Za-z_-]+", job_id or ""):
        raise UnsafeName(f"job id {job_id!r} must be non-empty and contain only letters, digits, '_' or '-'")
    return "/".join(job_id[i:i + 3] for i in range(0, len(job_id), 3))


def safe_name(name: str) -> str:
    """One path component: separators and control characters become ``_``; ``.``/``..`` are escaped."""
    cleaned = _UNSAFE.sub("_", str(name))
    if cleaned in ("", ".", ".."):
        cleaned = cleaned.replace(".", "_") or "_"
    return cleaned


def safe_relpath(name: str) -> str:
    """Op ids may contain ``/`` (``demo/tool_1``): keep the hierarchy, but no part may climb out."""
    parts = [safe_name(p) for p in str(name).replace("\\", "/").split("/") if p not in ("",)]
    return "/".join(parts) or "_"


def node_triple(host: str, port: object, resource_id: int) -> str:
    """``<host>-<port>-<resourceId>``; the runner pseudo-node is ``local-0-0``."""
    port_text = "" if port is None else str(port)
    return safe_name(f"{host}-{port_text}-{resource_id}")


@dataclass(frozen=True)
class NodePaths:
    """The one spelling of a node's file names, as plain strings: a node run builds this once
    instead of a dozen ``Path`` objects on the hot path; :class:`JobDir`'s per-node methods wrap
    the same names in ``Path``. ``phase`` and ``triple`` are already :func:`safe_name`-d; the
    phase-independent names (output, input, output-op) do not use ``phase``."""

    root: str
    phase: str
    triple: str

    @property
    def key(self) -> str:
        """``<phase>/<triple>``: which node's op a process on a host belongs to (``AUTOEXEC_NODE_KEY``)."""
        return f"{self.phase}/{self.triple}"

    @property
    def log(self) -> str:
        return f"{self.root}/log/{self.phase}/{self.triple}.txt"

    @property
    def hislog_dir(self) -> str:
        return f"{self.root}/log/{self.phase}/{self.triple}.hislog"

    @property
    def status(self) -> str:
        return f"{self.root}/status/{self.phase}/{self.triple}.json"

    @property
    def output(self) -> str:
        return f"{self.root}/output/{self.triple}.json"

    @property
    def input(self) -> str:
        return f"{self.root}/input/{self.triple}.json"

    @property
    def op_output_dir(self) -> str:
        return f"{self.root}/output-op/{self.triple}"

    def op_output(self, op_id: str) -> str:
        return f"{self.op_output_dir}/{safe_relpath(op_id)}.json"

    def livedata(self, op_id: str) -> str:
        return f"{self.root}/livedata/{self.phase}/{self.triple}/{safe_relpath(op_id)}.json"


@dataclass(frozen=True)
class JobDir:
    root: Path

    @classmethod
    def for_job(cls, data_dir: Path, job_id: str) -> "JobDir":
        return cls(data_dir / "job" / split_job_id(job_id))

    # --- whole-job files -------------------------------------------------------------
    @property
    def params(self) -> Path:
        return self.root / "params.json"

    @property
    def nodes(self) -> Path:
        return self.root / "nodes.json"

    def phase_nodes(self, phase: str) -> Path:
        return self.root / f"nodes-ph-{safe_name(phase)}.json"

    def group_nodes(self, group_no: int) -> Path:
        return self.root / f"nodes-gp-{int(group_no)}.json"

    @property
    def console_log(self) -> Path:
        return self.root / "log" / "console.txt"

    @property
    def console_hislog_dir(self) -> Path:
        return self.root / "log" / "console.hislog"

    @property
    def pid_file(self) -> Path:
        """Unlike the original (which matched process names): the running invocation records who it is, abort/pause read it."""
        return self.root / "autoexec.pid"

    @property
    def status_dir(self) -> Path:
        return self.root / "status"

    # --- per phase / node ------------------------------------------------------------
    def node_paths(self, phase: str, triple: str) -> NodePaths:
        return NodePaths(str(self.root), safe_name(phase), safe_name(triple))

    def _node_files(self, triple: str) -> NodePaths:
        """For the names that do not depend on the phase."""
        return NodePaths(str(self.root), "", safe_name(triple))

    def node_log(self, phase: str, triple: str) -> Path:
        return Path(self.node_paths(phase, triple).log)

    def node_hislog_dir(self, phase: str, triple: str) -> Path:
        return Path(self.node_paths(phase, triple).hislog_dir)

    def node_status(self, phase: str, triple: str) -> Path:
        return Path(self.node_paths(phase, triple).status)

    def node_output(self, triple: str) -> Path:
        return Path(self._node_files(triple).output)

    def op_output_dir(self, triple: str) -> Path:
        return Path(self._node_files(triple).op_output_dir)

    def op_output(self, triple: str, op_id: str) -> Path:
        return Path(self._node_files(triple).op_output(op_id))

    def node_input(self, triple: str) -> Path:
        return Path(self._node_files(triple).input)

    def livedata(self, phase: str, triple: str, op_id: str) -> Path:
        return Path(self.node_paths(phase, triple).livedata(op_id))

    def script_dir(self, bundle: str = "") -> Path:
        return self.root / "script" / safe_relpath(bundle) if bundle else self.root / "script"

    @property
    def file_dir(self) -> Path:
        return self.root / "file"

    def make_base_dirs(self) -> None:
        """The job dir is its owner's only (0700, also when it existed with a wider mode, whatever
        the umask): params.json, nodes files, logs and outputs hold passwords or what tools print.
        Parents are shared with other jobs (ids nest) and keep the usual mode."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.root.mkdir(mode=0o700)
        except FileExistsError:
            pass
        os.chmod(self.root, 0o700)
        for sub in ("script", "file", "status", "log", "output", "output-op"):
            try:
                (self.root / sub).mkdir(mode=0o700)
            except FileExistsError:
                pass
