"""Reaching a node over SSH (paramiko): one connection per node per phase, reused by its ops.

Design choices, and why:

* **Host keys.** ``host_key_policy`` is one of

  - ``"auto-add"`` (default): accept whatever key the host presents, as the original runner does
    (it uses paramiko's AutoAddPolicy and never persists keys). Jobs that work against the
    original must keep working after a host is reinstalled, so a changed key is not an error.
    Keys are *not* written anywhere: hundreds of node threads and several job processes appending
    to one file would need cross-process locking, and recording keys that are never checked buys
    no security.
  - ``"reject"``: strict. The key must match an entry in ``$AUTOEXEC_SSH_KNOWN_HOSTS`` (default
    ``$AUTOEXEC_HOME/known_hosts``) or ``~/.ssh/known_hosts`` (OpenSSH format, e.g. filled with
    ``ssh-keyscan``); otherwise the op fails before any password is sent.
  - ``"warn"``: like ``auto-add``, but an unknown or changed key puts a ``WARN:`` line into the
    node log, so operators can see what strict mode would refuse before switching to it.

* **Concurrency of handshakes.** A stock sshd (``MaxStartups 10:30:100``) starts dropping
  unauthenticated connections at 10 in flight; a phase fanning out to many nodes that share one
  sshd (jump hosts, containers, test pools) would see random "Error reading SSH protocol banner"
  failures. A module-level limiter bounds handshakes in flight per ``host:port`` (default 8) and
  overall (default 32, since handshakes are CPU-bound on the runner too). Configure with
  ``AUTOEXEC_SSH_MAX_HANDSHAKES="PER_DEST[,TOTAL]"``. A connection that is dropped before the
  banner, or reset during the handshake, is retried a few times with short jittered backoff.
  Waiting for a limiter slot is local queueing and does not count against the connect timeout.

* **Remote process identity.** The command runs through the login shell (Bourne-compatible
  shells only) in its own process group: OpenSSH already makes every session a new session
  leader, and ``setsid`` is used when it did not. The group id is written to
  ``<root>/.autoexec.pid`` so an op's own timeout or cancel can ``kill -9`` the whole group over
  the existing connection. ``kill_job`` instead scans ``/proc/*/environ`` for the exact entry
  ``AUTOEXEC_JOBID=<id>`` (GNU ``grep -z``, with a ``tr`` fallback) on a new connection, as the
  original's kill command does: it also catches daemons a tool detached, and an exact NUL-separated
  match means job 123 never hits job 1234. Needs ``/proc`` (Linux) on the target.

* **Secrets.** The exec request only carries a fixed bootstrap; the script with the exported
  ``op.env`` values arrives on stdin, so environment values never appear in the remote process
  list (argv items still do: they are arguments).

* **Staging in the one exec channel.** When an op's uploads are small (``ssh_inline.INLINE_LIMIT``,
  512 KiB) they travel inside that stdin script (text as ``printf`` arguments, binary as base64
  here-documents), and the fetched files come back on stdout, base64 between lines carrying a
  per-op random marker that the reader strips out of the log stream; a second fetch round
  (``fetch_more``) is asked for over the same channel's stdin. One channel per op, no SFTP: on a
  fan-out the SFTP subsystem and its dozen round trips per node cost more than the op. Hosts
  without ``base64``/``openssl`` (remembered per connection), a failing inline step, big uploads
  and fetched directories fall back to SFTP, with its error messages.

* **Cleanup.** The op's own script removes its root at its end (one exec per op) unless something
  must still be fetched over SFTP; otherwise, and after timeouts, cancels and kills, a separate
  ``rm -rf <root>`` follows. ``keep_dir_on_failure`` keeps the root whenever the op did not succeed.

* **Errors.** Every host-side failure becomes ``RemoteResult.error``: one line,
  ``ssh user@host:port: <what>``, never containing the password or key text.
"""
from __future__ import annotations

import io
import logging
import os
import posixpath
import random
import re
import shlex
import socket
import stat
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import paramiko

from autoexec.transports.ssh_inline import (
    END_OF_SCRIPT,
    InlinePlan,
    InlineReader,
    fetch_function,
    needs_b64,
    new_nonce,
    plan_inline,
    staging_script,
)
from autoexec.transports.base import (
    fetch_plan,
    local_fetch_path,
    Endpoint,
    LineSink,
    RemoteOp,
    RemoteResult,
    Timeouts,
    Upload,
)

__all__ = [
    "HOST_KEY_POLICIES",
    "HandshakeLimiter",
    "SshTransport",
    "handshake_limiter",
    "known_hosts_files",
    "load_private_key",
    "reset_handshake_limiter",
]

_log = logging.getLogger(__name__)

# paramiko's transport thread logs a full traceback for every connection an sshd drops; those
# are handled (retried or reported) here, so keep them out of the runner's stderr.
if logging.getLogger("paramiko").level == logging.NOTSET:
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)

HOST_KEY_POLICIES = ("auto-add", "reject", "warn")
DEFAULT_PER_DESTINATION = 8
DEFAULT_TOTAL = 32
_HANDSHAKE_ATTEMPTS = 4
_POLL = 0.1
"""How often blocking waits look at ``cancel`` and deadlines; bounds abort latency."""
_PIDFILE = ".autoexec.pid"


class _Failure(Exception):
    """A host-side failure, already phrased as the one line the node log will show."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Cancelled(Exception):
    pass


# --------------------------------------------------------------------------- handshake limiter


class HandshakeLimiter:
    """Caps unauthenticated connections in flight, per destination and in total.

    Destination slots are taken before the global one so a thread queued behind a busy host
    never holds a global slot that a thread for an idle host could use.
    """

    def __init__(self, per_destination: int = DEFAULT_PER_DESTINATION, total: int = DEFAULT_TOTAL) -> None:
        self.per_destination = max(1, per_destination)
        self.total = max(1, total)
        self._global = threading.BoundedSemaphore(self.total)
        self._lock = threading.Lock()
        self._per_dest: dict[tuple[str, int], threading.BoundedSemaphore] = {}
        self._in_flight: dict[tuple[str, int], int] = {}
        self._peak: dict[tuple[str, int], int] = {}

    def peak(self, host: str, port: int) -> int:
        """Highest number of handshakes seen in flight to one destination (for tests and benches)."""
        with self._lock:
            return self._peak.get((host, port), 0)

    @contextmanager
    def slot(self, host: str, port: int, cancel: threading.Event | None = None) -> Iterator[None]:
        key = (host, port)
        with self._lock:
            dest = self._per_dest.setdefault(key, threading.BoundedSemaphore(self.per_destination))
        _acquire(dest, cancel)
        try:
            _acquire(self._global, cancel)
            try:
                with self._lock:
                    now = self._in_flight.get(key, 0) + 1
                    self._in_flight[key] = now
                    self._peak[key] = max(now, self._peak.get(key, 0))
                try:
                    yield
                finally:
                    with self._lock:
                        self._in_flight[key] -= 1
            finally:
                self._global.release()
        finally:
            dest.release()


def _acquire(sem: threading.BoundedSemaphore, cancel: threading.Event | None) -> None:
    while not sem.acquire(timeout=_POLL):
        if cancel is not None and cancel.is_set():
            raise _Cancelled()


_limiter: HandshakeLimiter | None = None
_limiter_lock = threading.Lock()


def _limits_from_env() -> tuple[int, int]:
    raw = os.environ.get("AUTOEXEC_SSH_MAX_HANDSHAKES", "").strip()
    if not raw:
        return DEFAULT_PER_DESTINATION, DEFAULT_TOTAL
    try:
        parts = [int(p) for p in raw.split(",")]
    except ValueError:
        _log.warning("ignoring AUTOEXEC_SSH_MAX_HANDSHAKES=%r: expected PER_DEST[,TOTAL]", raw)
        return DEFAULT_PER_DESTINATION, DEFAULT_TOTAL
    per_dest = parts[0]
    total = parts[1] if len(parts) > 1 else max(DEFAULT_TOTAL, per_dest)
    return per_dest, total


def handshake_limiter() -> HandshakeLimiter:
    """The process-wide limiter, built from the environment on first use."""
    global _limiter
    with _limiter_lock:
        if _limiter is None:
            _limiter = HandshakeLimiter(*_limits_from_env())
        return _limiter


def reset_handshake_limiter(limiter: HandshakeLimiter | None = None) -> None:
    """Replace the process-wide limiter (``None``: rebuild from the environment on next use)."""
    global _limiter
    with _limiter_lock:
        _limiter = limiter


# --------------------------------------------------------------------------- keys


_KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


def load_private_key(spec: str) -> paramiko.PKey:
    """Load a key given as PEM/OpenSSH text or as a file path, whatever its type.

    Raises ``ValueError`` with a message that never includes the key material.
    """
    text: str
    if "-----BEGIN" in spec:
        text = spec
    else:
        try:
            text = Path(spec).expanduser().read_text()
        except OSError as err:
            raise ValueError(f"cannot read private key file {spec}: {err.strerror or err}") from None
    for cls in _KEY_CLASSES:
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            continue
    raise ValueError("private key is not an unencrypted ed25519, ecdsa or rsa key")


def known_hosts_files() -> list[Path]:
    """Files consulted by the ``reject`` and ``warn`` policies, in order."""
    explicit = os.environ.get("AUTOEXEC_SSH_KNOWN_HOSTS")
    if explicit:
        first = Path(explicit).expanduser()
    else:
        from autoexec.config import autoexec_home

        first = autoexec_home() / "known_hosts"
    return [first, Path("~/.ssh/known_hosts").expanduser()]


def _known_host_verdict(host: str, port: int, key: paramiko.PKey) -> str | None:
    """``None`` when the key is recorded for this host, else why not (one phrase)."""
    keys = paramiko.HostKeys()
    for path in known_hosts_files():
        try:
            keys.load(str(path))
        except OSError:
            continue
    name = host if port == 22 else f"[{host}]:{port}"
    recorded = keys.lookup(name)
    if recorded is None or len(recorded) == 0:
        return f"host key {key.get_name()} {key.get_fingerprint().hex()} is not in known_hosts"
    if recorded.get(key.get_name()) == key:
        return None
    return f"host key {key.get_name()} {key.get_fingerprint().hex()} does not match known_hosts"


# --------------------------------------------------------------------------- helpers


def _describe(err: BaseException) -> str:
    """A one-line description of a socket/paramiko error without stack noise."""
    if isinstance(err, socket.timeout):
        return "timed out"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _split_lines(buffer: bytearray, on_line: LineSink) -> None:
    while True:
        cut = buffer.find(b"\n")
        if cut < 0:
            return
        raw = bytes(buffer[:cut])
        del buffer[: cut + 1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        on_line(raw.decode("utf-8", errors="replace"))


def _q(value: str) -> str:
    return shlex.quote(value)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_BOOTSTRAP = 's=$(cat) && eval "$s"'
"""What the exec request carries. The real script arrives on stdin so environment values (node
JSON, tokens) never show up in the remote process list; only the final argv does."""


def _bootstrap_until(end: str) -> str:
    """Like ``_BOOTSTRAP``, for a script that later reads the second fetch round from the
    channel's stdin: ``sed`` stops at the line ``end``, before anything else has been sent."""
    return f"s=$(sed '/^{end}$/q') && eval \"$s\""


def _op_script(rundir: str | None, pidfile: str | None, env: dict[str, str], argv: list[str],
               remove_root: str | None = None, keep_on_failure: bool = False, make_rundir: bool = True,
               stdin_null: bool = False, tail: str = "") -> str:
    """Shell text that runs ``argv`` with ``env`` in its own process group, recording the pgid.

    Variables are exported by the login shell, whose own ``/proc/<pid>/environ`` keeps its
    initial environment, so ``kill_job`` hits the tool and its children but not that shell. The
    shell waits rather than ``exec``'ing the tool: it then reports a signal death as the usual
    ``128+n`` exit status (paramiko would report an exit-signal as ``-1``).

    With ``remove_root`` the script also applies the cleanup rule itself, sparing an op with
    nothing to fetch a second exec round trip (about a third of a trivial op's cost).
    ``tail`` is shell text run after the command (``$rc`` holds its status) and before the exit;
    ``stdin_null`` gives the command ``/dev/null`` as stdin (the channel's stdin stays ours).
    """
    bad = [name for name in env if not _ENV_NAME.match(name)]
    if bad:
        raise _Failure(f"invalid environment variable name {bad[0]!r}")
    steps = ([f"mkdir -p {_q(rundir)}"] if make_rundir else []) + [f"cd {_q(rundir)}"] if rundir else []
    steps += [f"export {_q(f'{k}={v}')}" for k, v in env.items()]
    command = " ".join(_q(a) for a in argv)
    if pidfile is None:
        return " && ".join(steps + [command]) + "; exit $?\n"
    in_new_session = _q('echo $$ > "$0" && "$@"')
    grouped = (
        f"if kill -0 -$$ 2>/dev/null || ! command -v setsid >/dev/null 2>&1; "
        f"then echo $$ > {_q(pidfile)} && {command}; "
        f"else setsid -w sh -c {in_new_session} {_q(pidfile)} {command}; fi"
    )
    script = " && ".join(steps + [f"{{ {grouped}; }}" + (" </dev/null" if stdin_null else "")]) + "; rc=$?; "
    if remove_root:
        cleanup = f"rm -rf {_q(remove_root)}"
        script += f"if [ $rc -eq 0 ]; then {cleanup}; fi; " if keep_on_failure else f"{cleanup}; "
    return script + tail + "exit $rc\n"


def _kill_group_command(pidfile: str) -> str:
    """Kill the process group recorded in ``pidfile``, waiting briefly for the file to appear
    (a cancel can race with the command's start)."""
    f = _q(pidfile)
    return (
        f"i=0; while [ ! -s {f} ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; "
        f"p=$(cat {f} 2>/dev/null); [ -n \"$p\" ] && kill -9 -$p 2>/dev/null; true"
    )


def _kill_job_command(job_id: str) -> str:
    """Kill every process whose environment holds exactly ``AUTOEXEC_JOBID=<job_id>``.

    Entries in ``/proc/<pid>/environ`` are NUL-separated; matching whole entries (``grep -zx``)
    is what keeps job 123 from matching job 1234. Repeats a few times to catch children forked
    between the scan and the kill. Prints the pids still alive, if any.
    """
    pat = _q(f"AUTOEXEC_JOBID={job_id}")
    scan = (
        "scan() { if grep -zqxF -e x /dev/null 2>/dev/null; [ $? -le 1 ]; then "
        f"grep -lsxzF -e {pat} /proc/[0-9]*/environ 2>/dev/null; "
        "else for f in /proc/[0-9]*/environ; do "
        f"tr '\\000' '\\n' 2>/dev/null < \"$f\" | grep -qxF -e {pat} && echo \"$f\"; done 2>/dev/null; fi "
        "| sed -n 's#^/proc/\\([0-9][0-9]*\\)/environ$#\\1#p' | grep -vx \"$$\"; }; "
    )
    return (
        scan
        + "n=0; while [ $n -lt 5 ]; do pids=$(scan); [ -z \"$pids\" ] && break; "
        + "kill -9 $pids 2>/dev/null; n=$((n+1)); sleep 0.1; done; pids=$(scan); echo $pids"
    )


# --------------------------------------------------------------------------- transport


class SshTransport:
    """:class:`~autoexec.transports.base.RemoteTransport` over one lazily opened paramiko connection."""

    def __init__(self, endpoint: Endpoint, timeouts: Timeouts, host_key_policy: str = "auto-add") -> None:
        if host_key_policy not in HOST_KEY_POLICIES:
            raise ValueError(f"host_key_policy must be one of {HOST_KEY_POLICIES}, not {host_key_policy!r}")
        self.endpoint = endpoint
        self.timeouts = timeouts
        self.host_key_policy = host_key_policy
        self._lock = threading.RLock()
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._inline_ok = True
        """False once the host showed it has no base64 tool: later ops of this node use SFTP."""
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
            return RemoteResult(None, self._error(_describe(err)))

    def _run(self, op: RemoteOp, on_line: LineSink, cancel: threading.Event) -> RemoteResult:
        if not op.root.startswith("/") or posixpath.normpath(op.root) in ("/", "/tmp"):
            return RemoteResult(None, self._error(f"refusing remote root {op.root!r}: not a private absolute dir"))
        try:
            transport = self._connection(cancel, on_line)
        except _Cancelled:
            return RemoteResult(None, "aborted")
        except _Failure as failure:
            return RemoteResult(failure.exit_code, self._error(str(failure)))
        result, script_cleaned_up = self._run_staged(transport, op, on_line, cancel)
        if not script_cleaned_up and (result.ok or not op.keep_dir_on_failure):
            cleanup_error = self._remove_root(transport, op.root)
            if cleanup_error and result.ok:
                return RemoteResult(result.exit_code, self._error(cleanup_error), result.fetched)
        return result

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
            script = _op_script(None, pidfile, env or {}, argv, remove_root=pidfile)
            return RemoteResult(self._execute(transport, script, pidfile, on_line, cancel, timeout))
        except _Cancelled:
            result = RemoteResult(None, "aborted")
        except _Failure as failure:
            result = RemoteResult(failure.exit_code, self._error(str(failure)))
        except (paramiko.SSHException, OSError, EOFError) as err:
            result = RemoteResult(None, self._error(_describe(err)))
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
            status, output = killer._exec_collect(transport, _kill_job_command(job_id), self.timeouts.connect + 10)
        except _Failure as failure:
            return self._error(f"kill job {job_id} failed: {failure}")
        except (paramiko.SSHException, OSError, EOFError) as err:
            return self._error(f"kill job {job_id} failed: {_describe(err)}")
        except _Cancelled:  # pragma: no cover - the event above is never set
            return self._error(f"kill job {job_id} cancelled")
        finally:
            killer.close()
        survivors = output.strip()
        if status != 0 or survivors:
            return self._error(f"kill job {job_id}: processes still running: {survivors or '?'} (status {status})")
        return None

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

    # ---------------------------------------------------------------- connection

    def _connection(self, cancel: threading.Event, on_line: LineSink) -> paramiko.Transport:
        with self._lock:
            if self._transport is not None and self._transport.is_active():
                return self._transport
            self.close()
            with handshake_limiter().slot(self.endpoint.host, self.endpoint.port, cancel):
                transport = self._handshake_with_retries(cancel, on_line)
            self._transport = transport
            self.connections_opened += 1
            return transport

    def _handshake_with_retries(self, cancel: threading.Event, on_line: LineSink) -> paramiko.Transport:
        for attempt in range(_HANDSHAKE_ATTEMPTS):
            try:
                return self._handshake(cancel, on_line)
            except _Dropped as dropped:
                if attempt == _HANDSHAKE_ATTEMPTS - 1:
                    raise _Failure(f"connection dropped during handshake ({dropped}); "
                                   f"sshd MaxStartups too low?") from None
                _sleep_cancellable(random.uniform(0.1, 0.3) * (2**attempt), cancel)
        raise AssertionError("unreachable")

    def _handshake(self, cancel: threading.Event, on_line: LineSink) -> paramiko.Transport:
        limit = self.timeouts.connect
        deadline = time.monotonic() + limit
        try:
            sock = socket.create_connection((self.endpoint.host, self.endpoint.port), timeout=limit)
        except socket.timeout:
            raise _Failure(f"connect timed out after {limit:g}s") from None
        except ConnectionRefusedError:
            raise _Failure("connection refused") from None
        except socket.gaierror as err:
            raise _Failure(f"cannot resolve host: {err.strerror or err}") from None
        except OSError as err:
            raise _Failure(f"cannot connect: {_describe(err)}") from None
        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = limit
            transport.handshake_timeout = limit
            transport.auth_timeout = limit
            self._negotiate(transport, deadline, cancel)
            self._check_host_key(transport, on_line)
            self._authenticate(transport, deadline)
            transport.set_keepalive(30)
            return transport
        except BaseException:
            transport.close()
            raise

    def _negotiate(self, transport: paramiko.Transport, deadline: float, cancel: threading.Event) -> None:
        done = threading.Event()
        started = time.monotonic()
        transport.start_client(event=done)
        while not done.wait(_POLL):
            if cancel.is_set():
                raise _Cancelled()
            if time.monotonic() >= deadline:
                raise _Failure(f"no SSH banner/key exchange within {self.timeouts.connect:g}s")
        if transport.is_active():
            return
        err = transport.get_exception()
        cause = err.__context__ if err is not None else None
        elapsed = time.monotonic() - started
        if isinstance(cause, (EOFError, ConnectionResetError, BrokenPipeError)) or (
            isinstance(err, (EOFError, ConnectionResetError)) and elapsed < self.timeouts.connect
        ):
            raise _Dropped(_describe(err))
        if isinstance(cause, socket.timeout) or elapsed >= self.timeouts.connect * 0.95:
            raise _Failure(f"no SSH banner within {self.timeouts.connect:g}s")
        raise _Failure(f"SSH negotiation failed: {_describe(err) if err else 'connection closed'}")

    def _check_host_key(self, transport: paramiko.Transport, on_line: LineSink) -> None:
        if self.host_key_policy == "auto-add":
            return
        key = transport.get_remote_server_key()
        verdict = _known_host_verdict(self.endpoint.host, self.endpoint.port, key)
        if verdict is None:
            return
        if self.host_key_policy == "reject":
            raise _Failure(verdict)
        on_line(f"WARN: {self._error(verdict)}; accepted (host_key_policy=warn)")

    def _authenticate(self, transport: paramiko.Transport, deadline: float) -> None:
        endpoint = self.endpoint
        transport.auth_timeout = max(1.0, deadline - time.monotonic())
        tried_key = False
        if endpoint.private_key:
            try:
                pkey = load_private_key(endpoint.private_key)
            except ValueError as err:
                raise _Failure(str(err)) from None
            tried_key = True
            try:
                transport.auth_publickey(endpoint.username, pkey)
                return
            except paramiko.AuthenticationException:
                if not endpoint.password:
                    raise _Failure("authentication failed (public key)") from None
            except (paramiko.SSHException, OSError, EOFError) as err:
                raise _Failure(f"authentication failed: {_describe(err)}") from None
        if not endpoint.password:
            raise _Failure("no password or private key to authenticate with")
        try:
            transport.auth_password(endpoint.username, endpoint.password)
        except paramiko.BadAuthenticationType as err:
            raise _Failure(f"authentication failed: server allows only {','.join(err.allowed_types)}") from None
        except paramiko.AuthenticationException as err:
            if "timeout" in str(err).lower():
                raise _Failure("authentication timed out") from None
            raise _Failure("authentication failed (public key and password)" if tried_key
                           else "authentication failed") from None
        except (paramiko.SSHException, OSError, EOFError) as err:
            raise _Failure(f"authentication failed: {_describe(err)}") from None

    # ---------------------------------------------------------------- one op

    def _run_staged(self, transport: paramiko.Transport, op: RemoteOp, on_line: LineSink,
                    cancel: threading.Event) -> tuple[RemoteResult, bool]:
        """The op's result, and whether the script already applied the cleanup rule to the root."""
        rundir = posixpath.join(op.root, op.workdir) if op.workdir else op.root
        pidfile = posixpath.join(op.root, _PIDFILE)
        plan = None
        if self._inline_ok and (op.fetch_dir is not None or not op.fetch):
            try:
                plan = plan_inline(op, rundir)
            except OSError:
                plan = None  # the SFTP path reports unreadable files with its usual message
        if plan is not None:
            try:
                inline = self._run_inline(transport, op, plan, rundir, pidfile, on_line, cancel)
            except _Cancelled:
                return RemoteResult(None, "aborted"), False
            except _Failure as failure:
                return RemoteResult(failure.exit_code, self._error(str(failure))), False
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
        round2 = bool(op.fetch) and op.fetch_more is not None
        script = staging_script(plan, nonce, needs_b64(plan, op))
        tail = 'printf \'%s:R:%s\\n\' "$N" "$rc"; '
        if op.fetch:
            script += fetch_function()
            emits = "; ".join(f"ax_e {_q(posixpath.join(rundir, rel))} {i}" for i, rel in enumerate(op.fetch))
            tail += f"if [ $rc -eq 0 ]; then {emits}; "
            if round2:
                tail += ('printf \'%s:W\\n\' "$N"; while IFS= read -r ax_l; do '
                         f'[ "$ax_l" = \'{end}\' ] && break; eval "$ax_l"; done; ')
            tail += "fi; "
        keep = (["[ $ax_k -eq 0 ]"] if op.fetch else []) + (["[ $rc -eq 0 ]"] if op.keep_dir_on_failure else [])
        cleanup = f"rm -rf {_q(op.root)}"
        tail += f"if {' && '.join(keep)}; then {cleanup}; fi; " if keep else f"{cleanup}; "
        script += _op_script(rundir, pidfile, op.env, op.argv, make_rundir=False, stdin_null=round2, tail=tail)
        if round2:
            script += end + "\n"

        def more(reader: InlineReader) -> None:
            lines = []
            try:
                wanted = fetch_plan(op, dict(reader.fetched))
            except BaseException:
                reader.send((end + "\n").encode())  # let the host finish before giving up
                raise
            for rel in wanted:
                if "\n" in rel or "\0" in rel or "\r" in rel:
                    reader.sftp_needed.append(rel)
                    lines.append("ax_k=1")
                    continue
                reader.names.append(rel)
                lines.append(f"ax_e {_q(posixpath.join(rundir, rel))} {len(reader.names) - 1}")
            reader.send(("".join(line + "\n" for line in lines) + end + "\n").encode())

        reader = InlineReader(nonce, on_line, op, rundir, more if round2 else None)
        status = self._execute(transport, script, pidfile, on_line, cancel, op.timeout, reader=reader,
                               bootstrap=_bootstrap_until(end) if round2 else _BOOTSTRAP)
        if reader.fallback is not None:
            if reader.fallback == "tools":
                self._inline_ok = False
            return None
        if status != 0 or not reader.finished:
            return RemoteResult(status), reader.finished
        if reader.error is not None:
            return RemoteResult(0, self._error(reader.error)), False
        fetched = dict(reader.fetched)
        if reader.sftp_needed:
            try:
                fetched.update(self._fetch(transport, op, rundir, reader.sftp_needed))
            except _Failure as failure:
                return RemoteResult(failure.exit_code, self._error(str(failure)), fetched), False
            return RemoteResult(0, None, fetched), False
        return RemoteResult(0, None, fetched), True

    def _run_sftp_staged(self, transport: paramiko.Transport, op: RemoteOp, rundir: str, pidfile: str,
                         on_line: LineSink, cancel: threading.Event) -> RemoteResult:
        try:
            if op.uploads or op.create_empty:
                self._stage(transport, op, rundir, cancel)
            script = _op_script(rundir, pidfile, op.env, op.argv,
                                None if op.fetch else op.root, op.keep_dir_on_failure)
            status = self._execute(transport, script,
                                   pidfile, on_line, cancel, op.timeout)
            fetched: dict[str, Path] = {}
            if status == 0 and op.fetch:
                fetched = self._fetch(transport, op, rundir)
            return RemoteResult(status, None, fetched)
        except _Cancelled:
            return RemoteResult(None, "aborted")
        except _Failure as failure:
            return RemoteResult(failure.exit_code, self._error(str(failure)))

    def _sftp_client(self, transport: paramiko.Transport) -> paramiko.SFTPClient:
        with self._lock:
            if self._sftp is None:
                try:
                    self._sftp = paramiko.SFTPClient.from_transport(transport)
                except (paramiko.SSHException, OSError, EOFError) as err:
                    raise _Failure(f"cannot open SFTP: {_describe(err)}") from None
                if self._sftp is None:
                    raise _Failure("cannot open SFTP")
            return self._sftp

    def _stage(self, transport: paramiko.Transport, op: RemoteOp, rundir: str, cancel: threading.Event) -> None:
        sftp = self._sftp_client(transport)
        channel = sftp.get_channel()
        if channel is not None:
            channel.settimeout(self.timeouts.write)
        current = "root"
        try:
            _sftp_makedirs(sftp, op.root)
            for upload in op.uploads:
                if cancel.is_set():
                    raise _Cancelled()
                current = str(upload.local)
                _upload(sftp, upload, posixpath.join(op.root, upload.remote_rel), cancel)
            _sftp_makedirs(sftp, rundir)
            for rel in op.create_empty:
                current = rel
                target = posixpath.join(rundir, rel)
                _sftp_makedirs(sftp, posixpath.dirname(target))
                sftp.open(target, "w").close()
        except (_Cancelled, _Failure):
            raise
        except (paramiko.SSHException, OSError, EOFError) as err:
            raise _Failure(f"upload to {op.root} failed at {current}: {_describe(err)}") from None

    def _fetch(self, transport: paramiko.Transport, op: RemoteOp, rundir: str,
               only: list[str] | None = None) -> dict[str, Path]:
        if op.fetch_dir is None:
            raise _Failure("op asks to fetch files but has no fetch_dir")
        sftp = self._sftp_client(transport)
        channel = sftp.get_channel()
        if channel is not None:
            channel.settimeout(self.timeouts.read)
        fetched: dict[str, Path] = {}
        rounds: list[list[str] | None] = [list(op.fetch), None] if only is None else [only]
        for wanted in rounds:
            for rel in wanted if wanted is not None else fetch_plan(op, fetched):
                remote = posixpath.join(rundir, rel)
                local = local_fetch_path(op.fetch_dir, rel)
                try:
                    attrs = sftp.stat(remote)
                except FileNotFoundError:
                    continue
                except (paramiko.SSHException, OSError, EOFError) as err:
                    raise _Failure(f"fetch of {rel} failed: {_describe(err)}", exit_code=0) from None
                try:
                    _download(sftp, remote, local, attrs)
                except (paramiko.SSHException, OSError, EOFError) as err:
                    raise _Failure(f"fetch of {rel} failed: {_describe(err)}", exit_code=0) from None
                fetched[rel] = local
        return fetched

    def _execute(self, transport: paramiko.Transport, script: str, pidfile: str | None,
                 on_line: LineSink, cancel: threading.Event, op_timeout: float | None,
                 reader: InlineReader | None = None, bootstrap: str = _BOOTSTRAP) -> int:
        """Run ``script`` (fed to the bootstrap on stdin), streaming merged stdout/stderr;
        returns the exit status.

        Timeouts and cancel kill the remote process group before giving up, so nothing keeps
        running on the host after the op has been reported as failed.
        """
        limit = op_timeout or self.timeouts.op
        read_limit = self.timeouts.read
        try:
            channel = transport.open_session(timeout=self.timeouts.connect)
            channel.set_combine_stderr(True)
            channel.settimeout(self.timeouts.write)
            channel.exec_command(bootstrap)
            channel.sendall(script.encode())
            if bootstrap == _BOOTSTRAP:
                channel.shutdown_write()
            channel.settimeout(_POLL)
        except (paramiko.SSHException, OSError, EOFError) as err:
            raise _Failure(f"cannot start command: {_describe(err)}") from None
        if reader is not None:
            def send(data: bytes) -> None:
                channel.settimeout(self.timeouts.write)
                try:
                    channel.sendall(data)
                    channel.shutdown_write()
                finally:
                    channel.settimeout(_POLL)
            reader.send = send
        start = last_output = time.monotonic()
        buffer = bytearray()

        def give_up(reason: str | None) -> None:
            self._kill_group(transport, pidfile)
            channel.close()
            if reason is None:
                raise _Cancelled()
            raise _Failure(reason)

        def check_limits() -> None:
            now = time.monotonic()
            if cancel.is_set():
                give_up(None)
            if now - start >= limit:
                give_up(f"command exceeded the op timeout of {limit:g}s and was killed")
            if now - last_output >= read_limit:
                give_up(f"no output for {read_limit:g}s (read timeout); command killed")

        try:
            while True:
                check_limits()
                try:
                    data = channel.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                last_output = time.monotonic()
                if reader is not None:
                    reader.feed(data)
                    continue
                buffer.extend(data)
                _split_lines(buffer, on_line)
            if reader is not None:
                reader.close()
            if buffer:
                on_line(bytes(buffer).decode("utf-8", errors="replace").rstrip("\r"))
                buffer.clear()
            while not channel.status_event.wait(_POLL):
                check_limits()
        except (paramiko.SSHException, OSError, EOFError) as err:
            channel.close()
            raise _Failure(f"connection failed while the command was running: {_describe(err)}") from None
        status = channel.exit_status
        channel.close()
        if status == -1:
            if not transport.is_active():
                raise _Failure("connection lost while the command was running")
            raise _Failure("command ended without an exit status (killed by a signal?)")
        return status

    def _kill_group(self, transport: paramiko.Transport, pidfile: str | None) -> None:
        """Best effort: over this connection if it still works, else over a new one."""
        if pidfile is None:
            return
        command = _kill_group_command(pidfile)
        if transport.is_active():
            try:
                self._exec_collect(transport, command, 5.0)
                return
            except _Failure:
                pass
        killer = SshTransport(self.endpoint, self.timeouts, self.host_key_policy)
        try:
            killer._exec_collect(killer._connection(threading.Event(), lambda _l: None), command, 5.0)
        except (_Failure, _Cancelled) as err:
            _log.warning("%s", self._error(f"could not kill the remote command: {err}"))
        finally:
            killer.close()

    def _exec_collect(self, transport: paramiko.Transport, command: str, timeout: float) -> tuple[int, str]:
        """Run a short housekeeping command and return (status, output)."""
        deadline = time.monotonic() + timeout
        try:
            channel = transport.open_session(timeout=timeout)
            channel.set_combine_stderr(True)
            channel.settimeout(_POLL)
            channel.exec_command(command)
            chunks: list[bytes] = []
            while True:
                if time.monotonic() >= deadline:
                    channel.close()
                    raise _Failure(f"housekeeping command timed out after {timeout:g}s")
                try:
                    data = channel.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                chunks.append(data)
            if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
                raise _Failure(f"housekeeping command timed out after {timeout:g}s")
            status = channel.exit_status
            channel.close()
            return status, b"".join(chunks).decode("utf-8", errors="replace")
        except (paramiko.SSHException, OSError, EOFError) as err:
            raise _Failure(f"housekeeping command failed: {_describe(err)}") from None

    def _remove_root(self, transport: paramiko.Transport, root: str) -> str | None:
        if not transport.is_active():
            return f"cannot remove {root}: connection lost"
        try:
            status, output = self._exec_collect(transport, f"rm -rf {_q(root)}", self.timeouts.write)
        except _Failure as failure:
            return f"cannot remove {root}: {failure}"
        if status != 0:
            return f"cannot remove {root}: {' '.join(output.split())[:200]}"
        return None


class _Dropped(Exception):
    """The server closed or reset the connection during the handshake (worth a retry)."""


def _sleep_cancellable(seconds: float, cancel: threading.Event) -> None:
    if cancel.wait(seconds):
        raise _Cancelled()


# --------------------------------------------------------------------------- SFTP helpers


def _sftp_makedirs(sftp: paramiko.SFTPClient, path: str) -> None:
    if path in ("", "/"):
        return
    try:
        if stat.S_ISDIR(sftp.stat(path).st_mode or 0):
            return
        raise OSError(f"{path} exists and is not a directory")
    except FileNotFoundError:
        pass
    _sftp_makedirs(sftp, posixpath.dirname(path))
    try:
        sftp.mkdir(path)
    except OSError:
        # Another op of the same job may have created it meanwhile.
        if not stat.S_ISDIR(sftp.stat(path).st_mode or 0):
            raise


def _upload(sftp: paramiko.SFTPClient, upload: Upload, remote: str, cancel: threading.Event) -> None:
    local = upload.local
    if local.is_dir():
        for dirpath, dirnames, filenames in os.walk(local, followlinks=True):
            dirnames.sort()
            rel = os.path.relpath(dirpath, local)
            remote_dir = remote if rel == "." else posixpath.join(remote, *Path(rel).parts)
            _sftp_makedirs(sftp, remote_dir)
            sftp.chmod(remote_dir, stat.S_IMODE(os.stat(dirpath).st_mode))
            for name in sorted(filenames):
                if cancel.is_set():
                    raise _Cancelled()
                path = os.path.join(dirpath, name)
                if not os.path.isfile(path):
                    continue  # sockets, fifos, dangling links: nothing a tool could use
                target = posixpath.join(remote_dir, name)
                sftp.put(path, target)
                sftp.chmod(target, stat.S_IMODE(os.stat(path).st_mode))
        return
    _sftp_makedirs(sftp, posixpath.dirname(remote))
    sftp.put(str(local), remote)
    mode = upload.mode if upload.mode is not None else stat.S_IMODE(local.stat().st_mode)
    sftp.chmod(remote, mode)


def _download(sftp: paramiko.SFTPClient, remote: str, local: Path, attrs: paramiko.SFTPAttributes) -> None:
    if stat.S_ISDIR(attrs.st_mode or 0):
        local.mkdir(parents=True, exist_ok=True)
        for entry in sftp.listdir_attr(remote):
            _download(sftp, posixpath.join(remote, entry.filename), local / entry.filename, entry)
        return
    local.parent.mkdir(parents=True, exist_ok=True)
    sftp.get(remote, str(local))

