"""Reaching a node over SSH (paramiko): one connection per node per phase, reused by its ops.

:class:`SshTransport` composes ``ssh_connect`` (host keys, handshake limits, auth), ``ssh_exec``
(the op's shell text, process group, kill) and ``ssh_inline``/``ssh_sftp`` (staging and fetching).
Small uploads and fetches travel inside the one exec channel, because on a fan-out an SFTP session
per node costs more than the op. Design notes: docs/design.md."""
from __future__ import annotations

import os
import posixpath
import random
import threading
from pathlib import Path

from autoexec.transports.paramiko_lib import paramiko

from autoexec.transports.base import Endpoint, FailureKind, LineSink, RemoteOp, RemoteResult, Timeouts
from autoexec.transports.base import fetch_plan
from autoexec.transports.decoding import DEFAULT_CHARSETS
from autoexec.transports.reap import (REAP_WAIT_SECS, Reaped, kill_job_script, parse_reap_output, reap_script,
                                      survivors)
from autoexec.transports.ssh_common import Cancelled, Failure, describe, log, quote
from autoexec.transports.ssh_connect import (
    HOST_KEY_POLICIES,
    HandshakeLimiter,
    handshake_limiter,
    known_hosts_files,
    load_private_key,
    open_connection,
    reset_handshake_limiter,
)
from autoexec.transports.ssh_exec import (
    BOOTSTRAP,
    PIDFILE,
    bootstrap_until,
    cleanup_after_loss_command,
    exec_collect,
    execute,
    inline_script,
    kill_group_command,
    op_script,
)
from autoexec.transports.ssh_inline import END_OF_SCRIPT, InlinePlan, InlineReader, new_nonce, plan_inline
from autoexec.transports.ssh_sftp import fetch_files, open_sftp, stage

__all__ = [
    "HOST_KEY_POLICIES",
    "HandshakeLimiter",
    "SshTransport",
    "handshake_limiter",
    "known_hosts_files",
    "load_private_key",
    "reset_handshake_limiter",
]


LOSS_CLEANUP_TIMEOUT = 10.0
"""Bound (seconds) on reaching a host again to clean up after its connection dropped mid-op."""


class SshTransport:
    """:class:`~autoexec.transports.base.RemoteTransport` over one lazily opened paramiko connection."""

    def __init__(self, endpoint: Endpoint, timeouts: Timeouts, host_key_policy: str = "auto-add",
                 output_charsets: tuple[str, ...] = DEFAULT_CHARSETS) -> None:
        if host_key_policy not in HOST_KEY_POLICIES:
            raise ValueError(f"host_key_policy must be one of {HOST_KEY_POLICIES}, not {host_key_policy!r}")
        self.endpoint = endpoint
        self.output_charsets = output_charsets
        """Fallback charsets of the common line rule (``output.charsets``)."""
        self.timeouts = timeouts
        self.host_key_policy = host_key_policy
        self._lock = threading.RLock()
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._inline_ok = True
        """False once the host showed it has no base64 tool: later ops of this node use SFTP."""
        self._left_behind: list[tuple[str, str | None]] = []
        """(pid file, root) of ops whose connection dropped before they were cleaned up."""
        self.connections_opened = 0
        """How many handshakes this instance made (reuse is visible to tests and benches)."""

    def __repr__(self) -> str:
        return f"SshTransport({self.destination}, policy={self.host_key_policy})"

    @property
    def destination(self) -> str:
        host = self.endpoint.host
        if ":" in host:
            host = f"[{host}]"
        return f"{self.endpoint.username}@{host}:{self.endpoint.port}"

    def _error(self, message: str) -> str:
        return f"ssh {self.destination}: {message}"

    # ---------------------------------------------------------------- public API

    def run(self, op: RemoteOp, on_line: LineSink, cancel: threading.Event) -> RemoteResult:
        try:
            return self._run(op, on_line, cancel)
        except (paramiko.SSHException, OSError, EOFError) as err:  # safety net: never raise for the host
            return RemoteResult(None, self._error(describe(err)), kind=FailureKind.CONNECT)

    def _run(self, op: RemoteOp, on_line: LineSink, cancel: threading.Event) -> RemoteResult:
        if not op.root.startswith("/") or posixpath.normpath(op.root) in ("/", "/tmp"):
            return RemoteResult(None, self._error(f"refusing remote root {op.root!r}: not a private absolute dir"), kind=FailureKind.OTHER)
        try:
            transport = self._connection(cancel, on_line)
        except Cancelled:
            return RemoteResult(None, "aborted", kind=FailureKind.CANCELLED)
        except Failure as failure:
            return RemoteResult(failure.exit_code, self._error(str(failure)), kind=failure.kind)
        try:
            result, script_cleaned_up = self._run_staged(transport, op, on_line, cancel)
        finally:
            self._close_sftp()
        keep = not result.ok and op.keep_dir_on_failure
        if not transport.is_active() and not script_cleaned_up:
            return self._after_loss(op, result, keep)
        if not script_cleaned_up and not keep:
            cleanup_error = self._remove_root(transport, op.root)
            if cleanup_error and result.ok:
                return RemoteResult(result.exit_code, self._error(cleanup_error), result.fetched,
                                    kind=FailureKind.REMOTE_EXIT)
        return result

    def _after_loss(self, op: RemoteOp, result: RemoteResult, keep: bool) -> RemoteResult:
        """The connection dropped during the op: kill what may still run of it and remove its
        root over a new connection now, or name the root left behind (removed at the next
        connection of this transport)."""
        pidfile = posixpath.join(op.root, PIDFILE)
        error = self._cleanup_elsewhere(pidfile, None if keep else op.root)
        if error is None:
            note = f"{op.root} kept on the host" if keep else f"{op.root} removed over a new connection"
        else:
            self._left_behind.append((pidfile, None if keep else op.root))
            note = (f"{op.root} left on the host ({error}); removed at the node's next connection in this phase"
                    if not keep else f"{op.root} kept on the host")
        message = result.error or self._error("connection lost")
        return RemoteResult(result.exit_code, f"{message}; {note}", result.fetched, kind=result.kind or FailureKind.CONNECT)

    def _cleanup_elsewhere(self, pidfile: str, root: str | None) -> str | None:
        limit = min(self.timeouts.connect, LOSS_CLEANUP_TIMEOUT)
        helper = SshTransport(self.endpoint, Timeouts(limit, limit, limit, limit), self.host_key_policy)
        try:
            transport = helper._connection(threading.Event(), lambda _line: None)
            status, output = exec_collect(transport, cleanup_after_loss_command(pidfile, root), limit)
        except (Failure, Cancelled) as err:
            return str(err) or "cancelled"
        except (paramiko.SSHException, OSError, EOFError) as err:
            return describe(err)
        finally:
            helper.close()
        return None if status == 0 else f"cleanup exited with status {status}"

    def run_command(
        self,
        argv: list[str],
        on_line: LineSink,
        cancel: threading.Event,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> RemoteResult:
        """Run ``argv`` in the login directory without staging a root (what ``sshcmd`` needs).

        Only a pgid file is kept in ``/tmp`` so a timeout or cancel can still kill the command."""
        pidfile = f"/tmp/.autoexec-cmd-{os.getpid()}-{random.getrandbits(48):012x}.pid"
        transport: paramiko.Transport | None = None
        try:
            transport = self._connection(cancel, on_line)
            script = op_script(None, pidfile, env or {}, argv, remove_root=pidfile)
            return RemoteResult(self._execute(transport, script, pidfile, on_line, cancel, timeout))
        except Cancelled:
            result = RemoteResult(None, "aborted", kind=FailureKind.CANCELLED)
        except Failure as failure:
            result = RemoteResult(failure.exit_code, self._error(str(failure)), kind=failure.kind)
        except (paramiko.SSHException, OSError, EOFError) as err:
            result = RemoteResult(None, self._error(describe(err)), kind=FailureKind.CONNECT)
        if transport is not None:
            self._remove_root(transport, pidfile)
        return result

    def kill_job(self, job_id: str) -> str | None:
        if not job_id:
            return self._error("kill_job needs a job id")
        # A new connection: the op's own connection may be blocked in another thread.
        killer = SshTransport(self.endpoint, self.timeouts, self.host_key_policy)
        try:
            transport = killer._connection(threading.Event(), lambda _line: None)
            status, output = exec_collect(transport, kill_job_script(job_id), self.timeouts.connect + 10)
        except Failure as failure:
            return self._error(f"kill job {job_id} failed: {failure}")
        except (paramiko.SSHException, OSError, EOFError) as err:
            return self._error(f"kill job {job_id} failed: {describe(err)}")
        except Cancelled:  # pragma: no cover - the event above is never set
            return self._error(f"kill job {job_id} cancelled")
        finally:
            killer.close()
        alive = survivors(output)
        if status != 0 or alive is None or alive:
            return self._error(f"kill job {job_id}: processes still running: {alive or '?'} (status {status})")
        return None

    def reap(self, job_id: str, node_key: str) -> Reaped:
        """Kill what is left of an op of ``job_id`` for ``node_key`` (a crashed runner's) and wait
        until it is gone (see ``reap``); over this node's connection, reused by the next op."""
        try:
            transport = self._connection(threading.Event(), lambda _line: None)
            status, output = exec_collect(transport, reap_script(job_id, node_key),
                                          self.timeouts.connect + REAP_WAIT_SECS + 5)
        except Failure as failure:
            return Reaped(error=self._error(f"checking for processes of the previous run failed: {failure}"))
        except (paramiko.SSHException, OSError, EOFError) as err:
            return Reaped(error=self._error(f"checking for processes of the previous run failed: {describe(err)}"))
        except Cancelled:  # pragma: no cover - the event above is never set
            return Reaped(error=self._error("cancelled"))
        return parse_reap_output(output, status, f"ssh {self.destination}")

    def close(self) -> None:
        with self._lock:
            sftp, transport = self._sftp, self._transport
            self._sftp = self._transport = None
        for closable in (sftp, transport):
            if closable is not None:
                try:
                    closable.close()
                except Exception:  # noqa: BLE001 - closing a dead connection must not fail the caller
                    pass

    def _close_sftp(self) -> None:
        with self._lock:
            sftp, self._sftp = self._sftp, None
        if sftp is not None:
            try:
                sftp.close()
            except Exception:  # noqa: BLE001 - the session may have died with the connection
                pass

    # ---------------------------------------------------------------- connection

    def _connection(self, cancel: threading.Event, on_line: LineSink) -> paramiko.Transport:
        with self._lock:
            if self._transport is not None and self._transport.is_active():
                return self._transport
            self.close()
            with handshake_limiter().slot(self.endpoint.host, self.endpoint.port, cancel):
                transport = open_connection(self.endpoint, self.timeouts.connect, self.host_key_policy,
                                            cancel, on_line, self._error)
            self._transport = transport
            self.connections_opened += 1
            self._clean_left_behind(transport)
            return transport

    def _clean_left_behind(self, transport: paramiko.Transport) -> None:
        """Remove what ops cut off by a dropped connection left on the host (best effort)."""
        while self._left_behind:
            pidfile, root = self._left_behind[0]
            try:
                exec_collect(transport, cleanup_after_loss_command(pidfile, root), self.timeouts.write)
            except Failure as failure:
                log.warning("%s", self._error(f"could not remove {root or pidfile}: {failure}"))
                return
            self._left_behind.pop(0)

    # ---------------------------------------------------------------- one op

    def _run_staged(self, transport: paramiko.Transport, op: RemoteOp, on_line: LineSink,
                    cancel: threading.Event) -> tuple[RemoteResult, bool]:
        """The op's result, and whether the script already applied the cleanup rule to the root."""
        rundir = posixpath.join(op.root, op.workdir) if op.workdir else op.root
        pidfile = posixpath.join(op.root, PIDFILE)
        plan = None
        if self._inline_ok and (op.fetch_dir is not None or not op.fetch):
            try:
                plan = plan_inline(op, rundir)
            except OSError:
                plan = None  # the SFTP path reports unreadable files with its usual message
        if plan is not None:
            try:
                inline = self._run_inline(transport, op, plan, rundir, pidfile, on_line, cancel)
            except Cancelled:
                return RemoteResult(None, "aborted", kind=FailureKind.CANCELLED), False
            except Failure as failure:
                return RemoteResult(failure.exit_code, self._error(str(failure)), kind=failure.kind), False
            if inline is not None:
                return inline
        result = self._run_sftp_staged(transport, op, rundir, pidfile, on_line, cancel)
        return result, not op.fetch and result.error is None and result.exit_code is not None

    def _run_inline(self, transport: paramiko.Transport, op: RemoteOp, plan: InlinePlan, rundir: str,
                    pidfile: str, on_line: LineSink, cancel: threading.Event) -> tuple[RemoteResult, bool] | None:
        """Stage, run, fetch and clean up in one exec channel (see ``ssh_inline``); ``None``
        when the host cannot, and the op must go the SFTP way."""
        nonce = new_nonce()
        end = END_OF_SCRIPT + new_nonce()  # not the output nonce: this one shows in the process list
        script = inline_script(op, plan, rundir, pidfile, nonce, end)
        reader = InlineReader(nonce, on_line, op, rundir, end, self.output_charsets)
        status = self._execute(transport, script, pidfile, on_line, cancel, op.timeout, reader=reader,
                               bootstrap=bootstrap_until(end) if op.fetch else BOOTSTRAP)
        if reader.fallback == "tools":
            self._inline_ok = False
            return None
        if reader.fallback is not None:
            detail = f": {reader.stage_error}" if reader.stage_error else ""
            return RemoteResult(None, self._error(f"cannot stage the op in {op.root}{detail}"), kind=FailureKind.REMOTE_EXIT), False
        if not reader.finished:
            if status == 0:
                return RemoteResult(None, self._error("the op script ended without the command's exit status"), kind=FailureKind.REMOTE_EXIT), False
            return RemoteResult(status), False
        if status != 0:
            return RemoteResult(status), True
        if reader.error is not None:
            return RemoteResult(0, self._error(reader.error), kind=FailureKind.REMOTE_EXIT), False
        fetched = dict(reader.fetched)
        if reader.garbled:
            on_line(f"WARN: other output garbled {', '.join(reader.garbled)} on the way back; "
                    f"fetching it again over SFTP")
        if reader.sftp_needed or reader.more_after_sftp:
            try:
                fetched.update(self._fetch(transport, op, rundir, reader.sftp_needed))
                if reader.more_after_sftp:
                    fetched.update(self._fetch(transport, op, rundir, fetch_plan(op, fetched)))
            except Failure as failure:
                return RemoteResult(failure.exit_code, self._error(str(failure)), fetched, kind=failure.kind), False
            return RemoteResult(0, None, fetched), False
        return RemoteResult(0, None, fetched), True

    def _run_sftp_staged(self, transport: paramiko.Transport, op: RemoteOp, rundir: str, pidfile: str,
                         on_line: LineSink, cancel: threading.Event) -> RemoteResult:
        try:
            if op.uploads or op.create_empty:
                self._stage(transport, op, rundir, cancel)
            script = op_script(rundir, pidfile, op.env, op.argv,
                               None if op.fetch else op.root, op.keep_dir_on_failure)
            status = self._execute(transport, script,
                                   pidfile, on_line, cancel, op.timeout)
            fetched: dict[str, Path] = {}
            if status == 0 and op.fetch:
                fetched = self._fetch(transport, op, rundir)
            return RemoteResult(status, None, fetched)
        except Cancelled:
            return RemoteResult(None, "aborted", kind=FailureKind.CANCELLED)
        except Failure as failure:
            return RemoteResult(failure.exit_code, self._error(str(failure)), kind=failure.kind)

    # ---------------------------------------------------------------- SFTP

    def _sftp_client(self, transport: paramiko.Transport) -> paramiko.SFTPClient:
        """The connection's one SFTP session, opened on first use."""
        with self._lock:
            if self._sftp is None:
                self._sftp = open_sftp(transport, self.timeouts.connect)
            return self._sftp

    def _stage(self, transport: paramiko.Transport, op: RemoteOp, rundir: str, cancel: threading.Event) -> None:
        try:
            stage(self._sftp_client(transport), op, rundir, cancel, self.timeouts.write)
        except Failure as failure:
            # SFTP names few errors ("Failure", "size mismatch"): ask the host what is wrong
            reason = self._why_unwritable(transport, op.root)
            raise Failure(f"{failure}{f' ({reason})' if reason else ''}", failure.exit_code) from None

    def _why_unwritable(self, transport: paramiko.Transport, root: str) -> str | None:
        """``<dir> is not writable`` or ``<dir> has N KiB free`` for the nearest existing parent
        of ``root``, or ``None`` when the host does not say."""
        probe = (f"d={quote(root)}; while [ ! -d \"$d\" ]; do d=$(dirname \"$d\"); done; "
                 "if [ ! -w \"$d\" ]; then echo \"autoexec-probe:$d is not writable\"; "
                 "else df -Pk \"$d\" | awk -v d=\"$d\" 'NR==2 {print \"autoexec-probe:\" d \" has \" $4 \" KiB free\"}'; fi")
        try:
            _status, output = exec_collect(transport, probe, self.timeouts.write)
        except Failure:
            return None
        found = [line.split(":", 1)[1] for line in output.splitlines() if line.startswith("autoexec-probe:")]
        return found[0] if found else None

    def _fetch(self, transport: paramiko.Transport, op: RemoteOp, rundir: str,
               only: list[str] | None = None) -> dict[str, Path]:
        if op.fetch_dir is None:
            raise Failure("op asks to fetch files but has no fetch_dir")
        return fetch_files(self._sftp_client(transport), op, op.fetch_dir, rundir, self.timeouts.read, only)

    # ---------------------------------------------------------------- exec

    def _execute(self, transport: paramiko.Transport, script: str, pidfile: str,
                 on_line: LineSink, cancel: threading.Event, op_timeout: float | None,
                 reader: InlineReader | None = None, bootstrap: str = BOOTSTRAP) -> int:
        """``ssh_exec.execute``, killing the process group in ``pidfile`` when giving up."""
        return execute(transport, script, on_line, cancel, self.timeouts, op_timeout,
                       lambda: self._kill_group(transport, pidfile), reader, bootstrap, self.output_charsets)

    def _kill_group(self, transport: paramiko.Transport, pidfile: str) -> None:
        """Best effort: over this connection if it still works, else over a new one."""
        command = kill_group_command(pidfile)
        if transport.is_active():
            try:  # the op's channel is still open: a MaxSessions 1 host refuses this one at once
                exec_collect(transport, command, 5.0, session_retry=0.0)
                return
            except Failure:
                pass
        killer = SshTransport(self.endpoint, self.timeouts, self.host_key_policy)
        try:
            exec_collect(killer._connection(threading.Event(), lambda _l: None), command, 5.0)
        except (Failure, Cancelled) as err:
            log.warning("%s", self._error(f"could not kill the remote command: {err}"))
        finally:
            killer.close()

    def _remove_root(self, transport: paramiko.Transport, root: str) -> str | None:
        if not transport.is_active():
            return f"cannot remove {root}: connection lost"
        try:
            status, output = exec_collect(transport, f"rm -rf {quote(root)}", self.timeouts.write)
        except Failure as failure:
            return f"cannot remove {root}: {failure}"
        if status != 0:
            return f"cannot remove {root}: {' '.join(output.split())[:200]}"
        return None
