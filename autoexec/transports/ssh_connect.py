"""Opening an authenticated paramiko connection for :class:`~autoexec.transports.ssh.SshTransport`.

Host keys are accepted as the original accepts them unless ``reject``/``warn`` is chosen, and
handshakes in flight are bounded per destination and overall (``AUTOEXEC_SSH_MAX_HANDSHAKES``)
because a stock sshd drops unauthenticated connections beyond 10. Design notes: docs/design.md."""
from __future__ import annotations

import io
import logging
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from autoexec.transports.paramiko_lib import paramiko

from autoexec.conf.errors import AutoexecError
from autoexec.conf.retry import Backoff, RetryCancelled, retry
from autoexec.conf.settings import load_settings
from autoexec.transports.base import Endpoint, FailureKind, LineSink
from autoexec.transports.ssh_common import POLL, Cancelled, Failure, describe

__all__ = [
    "DEFAULT_PER_DESTINATION",
    "DEFAULT_TOTAL",
    "HOST_KEY_POLICIES",
    "HandshakeLimiter",
    "handshake_limiter",
    "known_hosts_files",
    "load_private_key",
    "open_connection",
    "reset_handshake_limiter",
]

# paramiko's transport thread logs a full traceback for every connection an sshd drops; those
# are handled (retried or reported) here, so keep them out of the runner's stderr.
if logging.getLogger("paramiko").level == logging.NOTSET:
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)

HOST_KEY_POLICIES = ("auto-add", "reject", "warn")
DEFAULT_PER_DESTINATION = 8
DEFAULT_TOTAL = 32
_HANDSHAKE_ATTEMPTS = 4
_HANDSHAKE_BACKOFF = Backoff(first=0.3, factor=2.0, cap=10.0, jitter=True)
"""Short and jittered: handshakes dropped together (``MaxStartups``) must not come back together."""


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
    while not sem.acquire(timeout=POLL):
        if cancel is not None and cancel.is_set():
            raise Cancelled()


_limiter: HandshakeLimiter | None = None
_limiter_lock = threading.Lock()


def _limits_from_env() -> tuple[int, int]:
    return load_settings().handshake_limits(DEFAULT_TOTAL)


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
    settings = load_settings()
    explicit = settings.ssh_known_hosts
    first = explicit.expanduser() if explicit else settings.autoexec_home() / "known_hosts"
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


# --------------------------------------------------------------------------- connect and authenticate


class _Dropped(AutoexecError):
    """The server closed or reset the connection during the handshake (worth a retry)."""


def open_connection(endpoint: Endpoint, limit: float, host_key_policy: str, cancel: threading.Event,
                    on_line: LineSink, error: Callable[[str], str]) -> paramiko.Transport:
    """Connect, negotiate, check the host key and authenticate, retrying dropped handshakes.

    ``limit`` is the connect timeout; ``error`` phrases a message as the node log shows it (used
    for the ``warn`` policy's line). The caller holds a limiter slot.
    """
    try:
        return retry(lambda: _handshake(endpoint, limit, host_key_policy, cancel, on_line, error),
                     attempts=_HANDSHAKE_ATTEMPTS, backoff=_HANDSHAKE_BACKOFF, cancel=cancel, retry_on=(_Dropped,))
    except _Dropped as dropped:
        raise Failure(f"connection dropped during handshake ({dropped}); "
                      f"sshd MaxStartups too low?", kind=FailureKind.CONNECT) from None
    except RetryCancelled:
        raise Cancelled() from None


def _handshake(endpoint: Endpoint, limit: float, host_key_policy: str, cancel: threading.Event,
               on_line: LineSink, error: Callable[[str], str]) -> paramiko.Transport:
    deadline = time.monotonic() + limit
    try:
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=limit)
    except socket.timeout:
        raise Failure(f"connect timed out after {limit:g}s", kind=FailureKind.TIMEOUT) from None
    except ConnectionRefusedError:
        raise Failure("connection refused", kind=FailureKind.CONNECT) from None
    except socket.gaierror as err:
        raise Failure(f"cannot resolve host: {err.strerror or err}", kind=FailureKind.CONNECT) from None
    except OSError as err:
        raise Failure(f"cannot connect: {describe(err)}", kind=FailureKind.CONNECT) from None
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = limit
        transport.handshake_timeout = limit
        transport.auth_timeout = limit
        _negotiate(transport, limit, deadline, cancel)
        _check_host_key(transport, endpoint, host_key_policy, on_line, error)
        _authenticate(transport, endpoint, deadline)
        transport.set_keepalive(30)
        return transport
    except BaseException:
        transport.close()
        raise


def _negotiate(transport: paramiko.Transport, limit: float, deadline: float, cancel: threading.Event) -> None:
    done = threading.Event()
    started = time.monotonic()
    transport.start_client(event=done)
    while not done.wait(POLL):
        if cancel.is_set():
            raise Cancelled()
        if time.monotonic() >= deadline:
            raise Failure(f"no SSH banner/key exchange within {limit:g}s", kind=FailureKind.TIMEOUT)
    if transport.is_active():
        return
    err = transport.get_exception()
    cause = err.__context__ if err is not None else None
    elapsed = time.monotonic() - started
    if err is not None and (isinstance(cause, (EOFError, ConnectionResetError, BrokenPipeError)) or (
        isinstance(err, (EOFError, ConnectionResetError)) and elapsed < limit
    )):
        raise _Dropped(describe(err))
    if isinstance(cause, socket.timeout) or elapsed >= limit * 0.95:
        raise Failure(f"no SSH banner within {limit:g}s", kind=FailureKind.TIMEOUT)
    raise Failure(f"SSH negotiation failed: {describe(err) if err else 'connection closed'}", kind=FailureKind.CONNECT)


def _check_host_key(transport: paramiko.Transport, endpoint: Endpoint, host_key_policy: str,
                    on_line: LineSink, error: Callable[[str], str]) -> None:
    if host_key_policy == "auto-add":
        return
    key = transport.get_remote_server_key()
    verdict = _known_host_verdict(endpoint.host, endpoint.port, key)
    if verdict is None:
        return
    if host_key_policy == "reject":
        raise Failure(verdict, kind=FailureKind.AUTH)
    on_line(f"WARN: {error(verdict)}; accepted (host_key_policy=warn)")


def _authenticate(transport: paramiko.Transport, endpoint: Endpoint, deadline: float) -> None:
    transport.auth_timeout = max(1.0, deadline - time.monotonic())
    tried_key = False
    if endpoint.private_key:
        try:
            pkey = load_private_key(endpoint.private_key)
        except ValueError as err:
            raise Failure(str(err), kind=FailureKind.AUTH) from None
        tried_key = True
        try:
            transport.auth_publickey(endpoint.username, pkey)
            return
        except paramiko.AuthenticationException:
            if not endpoint.password:
                raise Failure("authentication failed (public key)", kind=FailureKind.AUTH) from None
        except (paramiko.SSHException, OSError, EOFError) as err:
            raise Failure(f"authentication failed: {describe(err)}", kind=FailureKind.AUTH) from None
    if not endpoint.password:
        raise Failure("no password or private key to authenticate with", kind=FailureKind.AUTH)
    try:
        transport.auth_password(endpoint.username, endpoint.password)
    except paramiko.BadAuthenticationType as err:
        raise Failure(f"authentication failed: server allows only {','.join(err.allowed_types)}", kind=FailureKind.AUTH) from None
    except paramiko.AuthenticationException as err:
        if "timeout" in str(err).lower():
            raise Failure("authentication timed out", kind=FailureKind.TIMEOUT) from None
        raise Failure("authentication failed (public key and password)" if tried_key
                      else "authentication failed", kind=FailureKind.AUTH) from None
    except (paramiko.SSHException, OSError, EOFError) as err:
        raise Failure(f"authentication failed: {describe(err)}", kind=FailureKind.AUTH) from None
