"""``RemoteTransport`` over a Tagent agent: ship files, run, stream, fetch, clean up.

The agent answers one request per connection, so "the connection of a node" is only the cached
handshake facts (OS type, charset); each step opens its own connection. Every host-side failure
becomes ``RemoteResult.error``; only programming errors escape ``run``.
"""
from __future__ import annotations

import math
import re
import shlex
import threading
import time
from pathlib import Path

from autoexec.conf.errors import AutoexecError
from autoexec.transports.base import (Endpoint, FailureKind, LineSink, RemoteOp, RemoteResult, Timeouts, fetch_plan,
                                      local_fetch_path)
from autoexec.transports.decoding import DEFAULT_CHARSETS
from autoexec.transports.reap import (REAP_WAIT_SECS, Reaped, kill_job_script, parse_reap_output, reap_script,
                                      survivors)
from autoexec.transports.tagent_client import (
    AgentInfo, TagentAuthError, TagentCancelled, TagentClient, TagentConnectError, TagentConnection, TagentError,
    TagentRemoteError, TagentTimeout, one_line,
)

STEP_READ_TIMEOUT = 60.0
"""The original uses 60 s for upload/download connections; only the exec waits ``rexec.readTimeout``."""
KILL_TIMEOUT = 5.0
"""Upper bound for the kill/cleanup done after a cancel, so ``run`` returns promptly."""
EXEC_GRACE = 1.5
"""The agent enforces the op timeout itself; the client-side bound fires only if it does not."""
AGENT_TOKENS = ("$TMPDIR", "%TMPDIR%", "$TAGENT_BASE", "%TAGENT_BASE%", "$TAGENT_HOME", "%TAGENT_HOME%")
"""Substituted textually by the agent anywhere in a command, even inside quotes."""
_VAR_PREFIX = re.compile(r"^(\$\{?\w+\}?|%\w+%)(.*)$", re.S)


def quote_unix(arg: str) -> str:
    """Quote for a POSIX shell so the item arrives verbatim, also shielding it from the agent's
    textual ``$TMPDIR``-style substitution by splitting ``$``/``%`` out of the single quotes."""
    quoted = shlex.quote(arg)
    if any(token in arg for token in AGENT_TOKENS):
        if not quoted.startswith("'"):
            quoted = f"'{quoted}'"
        quoted = quoted.replace("$", "'\"$\"'").replace("%", "'\"%\"'")
    return quoted


def quote_windows(arg: str) -> str:
    """Quote for cmd.exe + the MS C runtime argv parser. ``%VAR%`` is still expanded by cmd."""
    if arg and not re.search(r'[\s"&|<>^()!,;=]', arg):
        return arg
    escaped = re.sub(r'(\\*)"', lambda m: m.group(1) * 2 + '\\"', arg)
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
    return f'"{escaped}"'


def quote_remote_path(path: str, windows: bool) -> str:
    """Quote a path that may start with ``$TMPDIR`` (or ``%VAR%``), leaving that prefix for the
    agent/shell to expand, as the original does with its ``$TMPDIR/autoexec-...`` root."""
    match = _VAR_PREFIX.match(path)
    if windows:
        return '"' + path.replace("/", "\\").replace('"', "") + '"'
    if not match:
        return quote_unix(path)
    var, rest = match.groups()
    return f'"{var}"' + (quote_unix(rest) if rest else "")


class TagentTransport:
    """One node reached through its Tagent agent."""

    def __init__(self, endpoint: Endpoint, timeouts: Timeouts,
                 output_charsets: tuple[str, ...] = DEFAULT_CHARSETS) -> None:
        self.endpoint = endpoint
        self.timeouts = timeouts
        self.output_charsets = output_charsets
        self._info: AgentInfo | None = None
        self._active: set[TagentConnection] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TagentTransport({self.endpoint.host}:{self.endpoint.port})"

    # -- plumbing ------------------------------------------------------------------------
    def _client(self, read_timeout: float | None = None, connect_timeout: float | None = None) -> TagentClient:
        client = TagentClient(
            self.endpoint.host, self.endpoint.port, self.endpoint.password, user=self.endpoint.username,
            connect_timeout=connect_timeout or self.timeouts.connect,
            read_timeout=read_timeout or min(self.timeouts.read, STEP_READ_TIMEOUT),
            write_timeout=self.timeouts.write, charset=self.endpoint.charset, output_charsets=self.output_charsets)
        client.info = self._info
        return client

    def _agent_info(self) -> AgentInfo:
        if self._info is None:
            client = self._client()
            client.echo("autoexec")
            self._info = client.info
        assert self._info is not None
        return self._info

    def _track(self, conn: TagentConnection) -> None:
        with self._lock:
            self._active.add(conn)

    def _quote_path(self, path: str) -> str:
        return quote_remote_path(path, self._agent_info().is_windows)

    def _sh(self, cmd: str, *, read_timeout: float | None = None, connect_timeout: float | None = None) -> None:
        """Run a housekeeping command; its output only matters when it fails."""
        out: list[str] = []
        code = self._client(read_timeout, connect_timeout).execmd(cmd, out.append)
        if code != 0:
            detail = one_line(" ".join(out[-3:]))
            raise TagentError(f"exit {code}{': ' + detail if detail else ''}")

    # -- RemoteTransport -----------------------------------------------------------------
    def run(self, op: RemoteOp, on_line: LineSink, cancel: threading.Event) -> RemoteResult:
        limit = op.timeout or self.timeouts.op
        deadline = time.monotonic() + limit
        rp = _join(op.root, op.workdir)
        created = False
        try:
            self._check(cancel, deadline, limit)
            self._make_dirs(op, rp)
            created = True
            self._upload_all(op, cancel, deadline, limit)
        except _Aborted:
            if created:
                self._cleanup(op, failed=True, quick=True)
            return RemoteResult(exit_code=None, error="aborted", kind=FailureKind.CANCELLED)
        except (TagentConnectError, TagentAuthError, TagentTimeout) as err:
            if created:
                self._cleanup(op, failed=True)
                return RemoteResult(exit_code=None, error=f"upload to {op.root} failed: {err}", kind=err.kind)
            return RemoteResult(exit_code=None, error=str(err), kind=err.kind)  # the agent could not be reached
        except TagentError as err:
            if created:
                self._cleanup(op, failed=True)
            return RemoteResult(exit_code=None, error=f"upload to {op.root} failed: {err}", kind=err.kind)
        try:
            code = self._execute(op, rp, on_line, cancel, deadline, limit)
        except TagentCancelled:
            self._abort(op)
            return RemoteResult(exit_code=None, error="aborted", kind=FailureKind.CANCELLED)
        except TagentTimeout as err:
            self._cleanup(op, failed=True)
            return RemoteResult(exit_code=None, error=f"timeout: {err}", kind=err.kind)
        except TagentError as err:
            cleanup_error = self._cleanup(op, failed=True)
            left = f"; {op.root} left on the host" if cleanup_error else ""
            return RemoteResult(exit_code=None, error=f"execute failed: {err}{left}", kind=err.kind)
        result = RemoteResult(exit_code=code)
        if code == 0:
            result.error = self._fetch(op, rp, result.fetched)
        cleanup_error = self._cleanup(op, failed=not result.ok)
        result.error = result.error or cleanup_error
        if result.error:
            result.kind = FailureKind.REMOTE_EXIT
        return result

    def _make_dirs(self, op: RemoteOp, rp: str) -> None:
        """Create the root, the workdir and every upload's parent: the agent creates at most one
        directory level itself."""
        windows = self._agent_info().is_windows
        dirs = {op.root, rp}
        for upload in op.uploads:
            target = _join(op.root, upload.remote_rel)
            dirs.add(target if upload.local.is_dir() else target.rsplit("/", 1)[0])
        if windows:
            self._sh(" & ".join(f"if not exist {q} mkdir {q}" for q in map(self._quote_path, sorted(dirs))))
        else:
            self._sh("mkdir -p -- " + " ".join(self._quote_path(d) for d in sorted(dirs)))

    def _upload_all(self, op: RemoteOp, cancel: threading.Event, deadline: float, limit: float) -> None:
        convert = self._client().codec not in ("utf-8",)
        for upload in op.uploads:
            self._check(cancel, deadline, limit)
            dest = _join(op.root, upload.remote_rel)
            client = self._client()
            try:
                if upload.local.is_dir():
                    client.upload_dir(upload.local, dest)
                else:  # tool scripts (given a mode) are text: re-encode them for non-UTF-8 agents
                    client.upload_file(upload.local, dest, convert_text=convert and upload.mode is not None)
            except OSError as err:
                raise TagentError(f"{upload.local}: {err.strerror or err}") from None

    def _check(self, cancel: threading.Event, deadline: float, limit: float) -> None:
        if cancel.is_set():
            raise _Aborted()
        if time.monotonic() >= deadline:
            raise TagentTimeout(f"operation exceeded its {limit:g} s limit before the command started")

    def _command(self, op: RemoteOp, rp: str) -> str:
        windows = self._agent_info().is_windows
        quote = quote_windows if windows else quote_unix
        steps = [f"cd /d {self._quote_path(rp)}" if windows else f"cd {self._quote_path(rp)}"]
        if not windows:
            for upload in op.uploads:
                if upload.mode is not None and not upload.local.is_dir():
                    steps.append(f"chmod {upload.mode:o} {self._quote_path(_join(op.root, upload.remote_rel))}")
        for name in op.create_empty:
            steps.append(f"type nul > {quote(name)}" if windows else f": > {quote(name)}")
        steps.append(" ".join(quote(arg) for arg in op.argv))
        return " && ".join(steps)

    def _execute(self, op: RemoteOp, rp: str, on_line: LineSink, cancel: threading.Event,
                 deadline: float, limit: float) -> int:
        self._check(cancel, deadline, limit)
        agent_timeout = max(1, math.ceil(deadline - time.monotonic()))
        client = self._client(read_timeout=self.timeouts.read)
        try:
            return client.execmd(self._command(op, rp), on_line, env=dict(op.env), timeout=agent_timeout,
                                 cancel=cancel, deadline=deadline + EXEC_GRACE, on_connect=self._track)
        finally:
            with self._lock:
                self._active = {c for c in self._active if c.sock.fileno() != -1}

    def _fetch(self, op: RemoteOp, rp: str, fetched: dict[str, Path]) -> str | None:
        if not op.fetch:
            return None
        if op.fetch_dir is None:
            return "fetch requested without a fetch_dir"
        for wanted in (list(op.fetch), None):
            for rel in wanted if wanted is not None else fetch_plan(op, fetched):
                local = local_fetch_path(op.fetch_dir, rel)
                try:
                    self._client().download(_join(rp, rel), local)
                except TagentRemoteError as err:
                    if str(err).endswith("not exists."):
                        continue
                    return f"fetch of {rel} failed: {err}"
                except (TagentError, OSError) as err:
                    return f"fetch of {rel} failed: {err}"
                fetched[rel] = local
        return None

    def _cleanup(self, op: RemoteOp, failed: bool, quick: bool = False) -> str | None:
        if failed and op.keep_dir_on_failure:
            return None
        root = op.root.rstrip("/")
        if not root or root in ("$TMPDIR", "%TMPDIR%") or _VAR_PREFIX.match(root) is None and root.count("/") < 2:
            return f"refusing to remove suspicious remote root {op.root!r}"
        try:
            windows = self._agent_info().is_windows
            q = self._quote_path(root)
            cmd = f"if exist {q} rd /s /q {q}" if windows else f"rm -rf -- {q}"
            bound = KILL_TIMEOUT if quick else None
            self._sh(cmd, read_timeout=bound, connect_timeout=bound)
        except TagentError as err:
            return f"cleanup of {op.root} failed: {err}"
        return None

    def _abort(self, op: RemoteOp) -> None:
        """Kill the job's processes and clean up in the background; wait only briefly so the
        caller sees the abort at once even when the host is slow to answer."""
        def work() -> None:
            self._kill(op.job_id, KILL_TIMEOUT)
            self._cleanup(op, failed=True, quick=True)

        worker = threading.Thread(target=work, name=f"tagent-abort-{op.job_id}", daemon=True)
        worker.start()
        worker.join(timeout=KILL_TIMEOUT)

    def kill_job(self, job_id: str) -> str | None:
        return self._kill(job_id, None)

    def _kill(self, job_id: str, bound: float | None) -> str | None:
        try:
            if self._agent_info().is_windows:
                return "kill_job is not supported on Windows agents"
            out: list[str] = []
            code = self._client(bound, bound).execmd(kill_job_script(job_id), out.append)
        except TagentError as err:
            return f"kill of job {job_id} failed: {err}"
        alive = survivors("\n".join(out))
        if code != 0 or alive is None:
            detail = one_line(" ".join(out[-3:]))
            return f"kill of job {job_id} failed: exit {code}{': ' + detail if detail else ''}"
        return f"kill of job {job_id} failed: processes still running: {alive}" if alive else None

    def reap(self, job_id: str, node_key: str) -> Reaped:
        """Kill what is left of an op of ``job_id`` for ``node_key`` (a crashed runner's) and wait
        until it is gone (see ``reap``). The agent kills a command whose connection closed, but
        not what it detached, and not necessarily before the next run starts the op again."""
        where = f"tagent {self.endpoint.host}:{self.endpoint.port}"
        out: list[str] = []
        try:
            if self._agent_info().is_windows:
                return Reaped(checked=False)  # no /proc: the agent's own kill of a closed connection's command is all there is
            code = self._client(read_timeout=REAP_WAIT_SECS + 30).execmd(reap_script(job_id, node_key), out.append)
        except TagentError as err:
            return Reaped(error=f"{where}: checking for processes of the previous run failed: {err}")
        return parse_reap_output("\n".join(out), code, where)

    def close(self) -> None:
        """Closing an exec connection makes the agent kill that command's process session."""
        with self._lock:
            active, self._active = self._active, set()
        for conn in active:
            conn.close()


class _Aborted(AutoexecError):
    """Cancel seen between steps (before anything runs remotely)."""


def _join(base: str, rel: str) -> str:
    rel = rel.strip("/")
    return f"{base.rstrip('/')}/{rel}" if rel else base
