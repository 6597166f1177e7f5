"""The contract between the node executor and the ways of reaching a host.

The executor prepares everything a remote operation needs (files to ship, argv, env,
what to fetch back) as a :class:`RemoteOp`; a transport only moves bytes and runs
processes. Keeping this boundary narrow is what lets SSH and Tagent nodes share one
op path and one set of semantics.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

from autoexec.conf.errors import AutoexecError
from autoexec.transports.reap import Reaped

LineSink = Callable[[str], None]
"""Receives one decoded output line (without the trailing newline) as soon as it arrives."""


class FailureKind(str, Enum):
    """What kind of failure ended a remote op, beside its one-line message: records and callers
    decide on it (retry a connect failure, not an auth failure) without parsing the text."""

    CONNECT = "connect"
    """The host could not be reached, or the connection broke."""
    AUTH = "auth"
    """The host refused the credentials."""
    TIMEOUT = "timeout"
    """A connect, read or op time limit ran out."""
    CANCELLED = "cancelled"
    """The job was aborted while the op ran."""
    REMOTE_EXIT = "remote_exit"
    """The host side failed: the command exited non-zero or without a status, or the host
    reported an error for a step (staging, fetch, cleanup)."""
    OTHER = "other"
    """Anything else (a protocol violation, a local file that cannot be read)."""


class TransportError(AutoexecError):
    """A failure reaching or driving a host. ``str(err)`` is one line fit for a node log;
    ``kind`` says which kind of failure it is."""

    kind: FailureKind = FailureKind.OTHER

    def __init__(self, *args: object, kind: FailureKind | None = None) -> None:
        super().__init__(*args)
        if kind is not None:
            self.kind = kind


@dataclass(frozen=True)
class Endpoint:
    """How to reach one host. Secrets are excluded from repr so they never reach a log."""

    host: str
    port: int
    username: str = "root"
    password: str = field(default="", repr=False)
    private_key: str | None = field(default=None, repr=False)
    """PEM text of a private key, or a path to a key file."""
    charset: str | None = None
    """Agent-side charset override (Tagent); ``None`` means ask the agent."""


@dataclass(frozen=True)
class TransportTraits:
    """What the op path must know about a transport before it opens one: the ways transports
    differ that the op path acts on, declared instead of tested by protocol name."""

    temp_root: str = "/tmp"
    """Parent of an op's per-job remote root; a transport may expand variables in it (``$TMPDIR``)."""
    needs_secret: bool = True
    """A remote op fails up front when the node has neither password nor private key."""
    uses_password: bool = True
    """Runner tools that act against the node use its password: warn when it has none."""
    op_env: tuple[tuple[str, str], ...] = ()
    """Environment entries every remote op gets on this transport (e.g. ``TERM=dumb``)."""

    def remote_root(self, dir_name: str) -> str:
        """An op's per-job directory on the host, below the transport's temp root."""
        return f"{self.temp_root.rstrip('/')}/{dir_name}"


@dataclass(frozen=True)
class Timeouts:
    """Every wait on the network is bounded; values in seconds (config.ini ``rexec.*``, ``job.maxExecSecs``)."""

    connect: float = 60.0
    read: float = 3600.0
    write: float = 60.0
    op: float = 86400.0


@dataclass(frozen=True)
class Upload:
    """A local file or directory tree shipped to ``<root>/<remote_rel>``."""

    local: Path
    remote_rel: str
    mode: int | None = None
    """chmod for a single file (e.g. 0o700 for the tool); ``None`` keeps the local mode."""


@dataclass
class RemoteOp:
    """One operation to run on a remote node, fully prepared by the executor."""

    job_id: str
    root: str
    """Per-job remote working root, e.g. ``/tmp/autoexec-<job>-<resourceId>-<phaseIndex>``.
    Tagent transports may receive ``$TMPDIR/...`` and let the agent expand it."""
    uploads: list[Upload]
    workdir: str
    """Directory, relative to ``root``, the command runs in (the tool's bundle dir or ``''``)."""
    argv: list[str]
    """Command and arguments. Each item reaches the remote process as one argv item:
    transports quote them for the remote shell, never re-split them."""
    env: dict[str, str]
    """Extra environment for the tool; always contains ``AUTOEXEC_JOBID`` so kill can find the job."""
    timeout: float | None = None
    """Whole-op limit in seconds; ``None`` = ``Timeouts.op``."""
    fetch: list[str] = field(default_factory=list)
    """Paths relative to ``<root>/<workdir>`` to bring back after a zero exit (missing ones are skipped)."""
    fetch_dir: Path | None = None
    """Local directory fetched files land in (same relative path)."""
    fetch_more: Callable[[dict[str, Path]], list[str]] | None = None
    """Called once after ``fetch`` with what came back; returns more paths (relative to the
    workdir) to fetch before cleanup — e.g. the ``filepath`` outputs named in ``output.json``."""
    create_empty: list[str] = field(default_factory=list)
    """Files (relative to workdir) created empty before the run, e.g. ``output.json``."""
    keep_dir_on_failure: bool = False
    """``rexec.fail.reservedir``: leave ``root`` on the host when the op failed."""


def fetch_plan(op: "RemoteOp", fetched: dict[str, Path]) -> list[str]:
    """The second round of fetches, asked for once the first came back."""
    return list(op.fetch_more(dict(fetched))) if op.fetch_more is not None else []


def local_fetch_path(fetch_dir: Path, rel: str) -> Path:
    """Where a fetched remote path lands: always inside ``fetch_dir``, whatever the tool wrote."""
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return fetch_dir.joinpath(*parts) if parts else fetch_dir / "_"


@dataclass
class RemoteResult:
    exit_code: int | None
    """The command's real exit status; ``None`` when it never ran or was cut off."""
    error: str | None = None
    """One line saying why, when the op did not complete normally (connect, auth, timeout, kill)."""
    fetched: dict[str, Path] = field(default_factory=dict)
    kind: FailureKind | None = None
    """With ``error``: which kind of failure (``None``: not classified)."""

    @property
    def ok(self) -> bool:
        return self.error is None and self.exit_code == 0


@runtime_checkable
class RemoteTransport(Protocol):
    """One connection to one node, opened lazily and reused by every op of that node in a phase."""

    endpoint: Endpoint

    def run(self, op: RemoteOp, on_line: LineSink, cancel: threading.Event) -> RemoteResult:
        """Upload, execute, stream output, fetch, clean up. Never raises for host-side failures:
        they come back as ``RemoteResult.error``. Returns promptly once ``cancel`` is set."""
        ...

    def kill_job(self, job_id: str) -> str | None:
        """Stop every process of ``job_id`` on the host (found by its ``AUTOEXEC_JOBID`` marker,
        never by a command-line substring). Returns an error line or ``None``."""
        ...

    def reap(self, job_id: str, node_key: str) -> Reaped:
        """Kill and wait out what an earlier, crashed run left of ``job_id``'s op for ``node_key``
        (processes carrying both ``AUTOEXEC_JOBID`` and ``AUTOEXEC_NODE_KEY``), so the op can run
        again without overlapping itself."""
        ...

    def close(self) -> None: ...
