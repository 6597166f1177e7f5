"""What the ``ssh_*`` modules behind :class:`~autoexec.transports.ssh.SshTransport` share: the two
internal exceptions every step raises, the poll interval, one-line error phrasing, shell quoting,
opening a channel on a busy connection."""
from __future__ import annotations

import logging
import shlex
import socket
from autoexec.transports.paramiko_lib import paramiko

from autoexec.conf.retry import Backoff
from autoexec.conf.retry import retry as retry_call
from autoexec.transports.base import FailureKind, TransportError

log = logging.getLogger("autoexec.transports.ssh")
"""One logger for the whole SSH transport, named as before it was split into modules, so logging
configuration that targets ``autoexec.transports.ssh`` keeps working."""

POLL = 0.1
"""How often blocking waits look at ``cancel`` and deadlines; bounds abort latency."""


class Failure(TransportError):
    """A host-side failure, already phrased as the one line the node log will show."""

    def __init__(self, message: str, exit_code: int | None = None, kind: FailureKind | None = None) -> None:
        super().__init__(message, kind=kind)
        self.exit_code = exit_code


class SessionRefused(Failure):
    """The server would not open another channel on the connection (``MaxSessions``)."""


class Cancelled(TransportError):
    kind = FailureKind.CANCELLED


def describe(err: BaseException) -> str:
    """A one-line description of a socket/paramiko error without stack noise."""
    if isinstance(err, socket.timeout):
        return "timed out"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = " ".join(str(err).split())
    return text or type(err).__name__


def quote(value: str) -> str:
    return shlex.quote(value)


SESSION_RETRY = 3.0
"""How long a refused channel open is retried: an sshd with ``MaxSessions 1`` frees the slot of
the previous channel only once its close has gone both ways, a moment after ours."""


def open_session(transport: paramiko.Transport, timeout: float, retry: float = SESSION_RETRY) -> paramiko.Channel:
    """A new session channel, retried for up to ``retry`` seconds while the server refuses one
    (``SessionRefused`` once it keeps refusing)."""
    try:
        return retry_call(lambda: transport.open_session(timeout=timeout), attempts=None,
                          backoff=Backoff(first=0.02, cap=0.25), retry_on=(paramiko.ChannelException,),
                          should_retry=lambda _err: transport.is_active(), within=retry)
    except paramiko.ChannelException as err:
        raise SessionRefused(f"the server refused a new session ({describe(err)}; "
                             f"sshd MaxSessions reached?)") from None
