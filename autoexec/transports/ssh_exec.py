"""Running commands on a connected host for :class:`~autoexec.transports.ssh.SshTransport`: the
shell text of an op, the exec channel that streams its output, and the kill commands.

The op runs in its own process group (pgid file for kill), its environment arrives on stdin so
secrets stay out of the remote process list, and stdout/stderr are read apart. Design notes:
docs/design.md."""
from __future__ import annotations

import posixpath
import re
import socket
import threading
import time
from typing import Callable

from autoexec.transports.paramiko_lib import paramiko

from autoexec.transports.base import FailureKind, LineSink, RemoteOp, Timeouts
from autoexec.transports.decoding import DEFAULT_CHARSETS, LineSplitter
from autoexec.transports.ssh_common import (POLL, SESSION_RETRY, Cancelled, Failure, SessionRefused, describe,
                                            open_session, quote)
from autoexec.transports.ssh_inline import (PIDFILE, WAIT_FOR_ANSWER, InlinePlan, InlineReader, fetch_function, needs_b64,
                                            staging_script)

__all__ = [
    "BOOTSTRAP",
    "PIDFILE",
    "bootstrap_until",
    "cleanup_after_loss_command",
    "exec_collect",
    "execute",
    "inline_script",
    "kill_group_command",
    "op_script",
]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

def in_login_shell(command: str) -> str:
    """``command`` run after the account's login files, so a tool sees the environment its profile
    sets (``ORACLE_HOME``, ``JAVA_HOME``, ``PATH``…), as under the original, which typed its command
    into a login shell. bash and ksh accounts get their own shell and its files (``/etc/profile``,
    then the first of ``~/.bash_profile``, ``~/.bash_login``, ``~/.profile`` for bash); any other
    shell gets ``sh`` with ``/etc/profile`` and ``~/.profile``, the op text being Bourne shell. The
    files are sourced with stdin on ``/dev/null`` (they cannot eat the script that follows on the
    channel) and their output discarded; then ``command`` gets the channel back. Sourced rather than
    ``sh -l``, so no ``~/.bash_logout`` runs after the op's own output."""
    inner = ('{ if [ -r /etc/profile ]; then . /etc/profile; fi; for ax_p in "$@"; do '
             'if [ -r "$ax_p" ]; then . "$ax_p"; break; fi; done; } </dev/null >/dev/null 2>&1; '
             f'set --; exec 0<&5 1>&3 2>&4 3>&- 4>&- 5<&-; {command}')
    return ('case "${SHELL##*/}" in '
            'bash) ax_sh=$SHELL; set -- "$HOME/.bash_profile" "$HOME/.bash_login" "$HOME/.profile";; '
            'ksh|ksh93|mksh) ax_sh=$SHELL; set -- "$HOME/.profile";; '
            '*) ax_sh=/bin/sh; set -- "$HOME/.profile";; esac; '
            f'exec "$ax_sh" -c {quote(inner)} ax "$@" 3>&1 4>&2 5<&0 </dev/null >/dev/null 2>&1')


BOOTSTRAP = in_login_shell('s=$(cat) && eval "$s"')
"""What the exec request carries. The real script arrives on stdin so environment values (node
JSON, tokens) never show up in the remote process list; only the final argv does."""


def bootstrap_until(end: str) -> str:
    """Like ``BOOTSTRAP``, for a script that later reads the second fetch round from the
    channel's stdin: ``sed`` stops at the line ``end``, before anything else has been sent."""
    return in_login_shell(f"s=$(sed '/^{end}$/q') && eval \"$s\"")


# --------------------------------------------------------------------------- shell text


def op_script(rundir: str | None, pidfile: str, env: dict[str, str], argv: list[str],
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
        raise Failure(f"invalid environment variable name {bad[0]!r}")
    steps = ([f"mkdir -p {quote(rundir)}"] if make_rundir else []) + [f"cd {quote(rundir)}"] if rundir else []
    steps += [f"export {quote(f'{k}={v}')}" for k, v in env.items()]
    command = " ".join(quote(a) for a in argv)
    in_new_session = quote('echo $$ > "$0" && "$@"')
    grouped = (
        f"if kill -0 -$$ 2>/dev/null || ! command -v setsid >/dev/null 2>&1; "
        f"then echo $$ > {quote(pidfile)} && {command}; "
        f"else setsid -w sh -c {in_new_session} {quote(pidfile)} {command}; fi"
    )
    script = " && ".join(steps + [f"{{ {grouped}; }}" + (" </dev/null" if stdin_null else "")]) + "; rc=$?; "
    if remove_root:
        cleanup = f"rm -rf {quote(remove_root)}"
        script += f"if [ $rc -eq 0 ]; then {cleanup}; fi; " if keep_on_failure else f"{cleanup}; "
    return script + tail + "exit $rc\n"


def inline_script(op: RemoteOp, plan: InlinePlan, rundir: str, pidfile: str, nonce: str, end: str) -> str:
    """The whole single-channel script of an op (see ``ssh_inline``): stage, run, report the exit
    status; after a zero exit send the fetched files and wait for the reader's answer (more files,
    then the line ``end``); then apply the cleanup rule."""
    script = staging_script(plan, nonce, needs_b64(plan, op))
    tail = 'printf \'%s:R:%s\\n\' "$N" "$rc"; '
    if op.fetch:
        script += fetch_function()
        emits = "; ".join(f"ax_e {quote(posixpath.join(rundir, rel))} {i}" for i, rel in enumerate(op.fetch))
        tail += (f"if [ $rc -eq 0 ]; then {emits}; {WAIT_FOR_ANSWER}; while IFS= read -r ax_l; do "
                 f'[ "$ax_l" = \'{end}\' ] && break; eval "$ax_l"; done; fi; ')
    keep = (["[ $ax_k -eq 0 ]"] if op.fetch else []) + (["[ $rc -eq 0 ]"] if op.keep_dir_on_failure else [])
    cleanup = f"rm -rf {quote(op.root)}"
    tail += f"if {' && '.join(keep)}; then {cleanup}; fi; " if keep else f"{cleanup}; "
    script += op_script(rundir, pidfile, op.env, op.argv, make_rundir=False, stdin_null=bool(op.fetch), tail=tail)
    if op.fetch:
        script += end + "\n"
    return script


def cleanup_after_loss_command(pidfile: str, root: str | None) -> str:
    """Kill the process group recorded in ``pidfile`` (if any) and remove ``root``: what is left
    of an op whose connection was lost."""
    f = quote(pidfile)
    kill = f"p=$(cat {f} 2>/dev/null); [ -n \"$p\" ] && kill -9 -$p 2>/dev/null; "
    return kill + (f"rm -rf {quote(root)}" if root else "true")


def kill_group_command(pidfile: str) -> str:
    """Kill the process group recorded in ``pidfile``, waiting briefly for the file to appear
    (a cancel can race with the command's start)."""
    f = quote(pidfile)
    return (
        f"i=0; while [ ! -s {f} ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; "
        f"p=$(cat {f} 2>/dev/null); [ -n \"$p\" ] && kill -9 -$p 2>/dev/null; true"
    )


# --------------------------------------------------------------------------- exec channels


LINGER_QUIET = 1.0
"""Once the command's exit status is in, output still arriving is read until the channel ends or
nothing came for this long: a process the command left running may hold the channel open."""
LINGER_MAX = 5.0
"""Upper bound of that wait after the exit status, for a left-behind process that keeps writing."""


class _Wakeup(threading.Event):
    """Shared by a channel's stdout and stderr buffers: set by either when data (or EOF) arrives.
    The buffers also ``clear()`` it when they run empty; that is ignored, so data on one stream
    never hides data on the other, and only the reader clears it (in :meth:`take`)."""

    def clear(self) -> None:
        pass

    def take(self, timeout: float) -> None:
        """Wait up to ``timeout`` for a wake-up, then re-arm."""
        self.wait(timeout)
        super().clear()


class _Lines:
    """One output stream cut into lines by the transports' common splitter."""

    def __init__(self, on_line: LineSink, charsets: tuple[str, ...]) -> None:
        self.on_line = on_line
        self.splitter = LineSplitter(charsets)

    def feed(self, data: bytes) -> None:
        for line in self.splitter.feed(data):
            self.on_line(line)

    def close(self) -> None:
        for line in self.splitter.flush():
            self.on_line(line)


def execute(transport: paramiko.Transport, script: str, on_line: LineSink, cancel: threading.Event,
            timeouts: Timeouts, op_timeout: float | None, kill_group: Callable[[], None],
            reader: InlineReader | None = None, bootstrap: str = BOOTSTRAP,
            output_charsets: tuple[str, ...] = DEFAULT_CHARSETS) -> int:
    """Run ``script`` (fed to the bootstrap on stdin), streaming stdout and stderr; returns the
    exit status.

    The two streams are read apart, each cut into its own lines: stderr bytes never land inside a
    stdout line (or inside the inline protocol's records, which travel on stdout only), and the
    lines of each stream keep their order. Timeouts and cancel call ``kill_group`` (kill the
    remote process group) before giving up, so nothing keeps running on the host after the op
    has been reported as failed. A process the command left running with the channel's output
    still open does not hold the op: see ``LINGER_QUIET``.
    """
    limit = op_timeout or timeouts.op
    read_limit = timeouts.read
    try:
        channel = open_session(transport, timeouts.connect)
        wakeup = _Wakeup()
        channel.in_buffer.set_event(wakeup)
        channel.in_stderr_buffer.set_event(wakeup)
        channel.settimeout(timeouts.write)
        channel.exec_command(bootstrap)
        channel.sendall(script.encode())
        if bootstrap == BOOTSTRAP:
            channel.shutdown_write()
    except SessionRefused as err:
        raise Failure(f"cannot start command: {err}") from None
    except (paramiko.SSHException, OSError, EOFError) as err:
        raise Failure(f"cannot start command: {describe(err)}", kind=FailureKind.CONNECT) from None
    if reader is not None:
        def send(data: bytes) -> None:
            channel.settimeout(timeouts.write)
            channel.sendall(data)
            if reader.last_round:
                channel.shutdown_write()
        reader.send = send
    start = last_output = time.monotonic()
    stdout = reader if reader is not None else _Lines(on_line, output_charsets)
    stderr = _Lines(on_line, output_charsets)
    ended_at: float | None = None
    lingered = False

    def give_up(reason: str | None, kind: FailureKind | None = None) -> None:
        kill_group()
        channel.close()
        if reason is None:
            raise Cancelled()
        raise Failure(reason, kind=kind)

    def check_limits(now: float) -> None:
        """Cancel, the op limit, and (until the exit status is in) the read limit."""
        if cancel.is_set():
            give_up(None)
        if now - start >= limit:
            give_up(f"command exceeded the op timeout of {limit:g}s and was killed", FailureKind.TIMEOUT)
        if ended_at is None and now - last_output >= read_limit:
            give_up(f"no output for {read_limit:g}s (read timeout); command killed", FailureKind.TIMEOUT)

    try:
        while True:
            now = time.monotonic()
            check_limits(now)
            moved = False
            if channel.recv_stderr_ready():
                stderr.feed(channel.recv_stderr(65536))
                moved = True
            if channel.recv_ready():
                data = channel.recv(65536)
                if data:
                    stdout.feed(data)
                    moved = True
            if moved:
                last_output = time.monotonic()
                continue
            if channel.eof_received or channel.closed:
                break
            if ended_at is None and channel.exit_status_ready():
                ended_at = now
            if ended_at is not None and (now - last_output >= LINGER_QUIET or now - ended_at >= LINGER_MAX):
                lingered = True
                break
            wakeup.take(POLL)
        while not lingered and (channel.recv_stderr_ready() or channel.recv_ready()):  # came with the EOF
            if channel.recv_stderr_ready():
                stderr.feed(channel.recv_stderr(65536))
            if channel.recv_ready():
                stdout.feed(channel.recv(65536))
        stdout.close()
        stderr.close()
        ended_at = ended_at or time.monotonic()  # output is done: only cancel and the op limit apply
        while not channel.status_event.wait(POLL):
            check_limits(time.monotonic())
    except (paramiko.SSHException, OSError, EOFError) as err:
        channel.close()
        raise Failure(f"connection failed while the command was running: {describe(err)}",
                      kind=FailureKind.CONNECT) from None
    except BaseException:
        channel.close()  # a reader callback failed: the host sees its stdin end and finishes
        raise
    status = channel.exit_status
    channel.close()
    if status == -1:
        if not transport.is_active():
            raise Failure("connection lost while the command was running", kind=FailureKind.CONNECT)
        raise Failure("command ended without an exit status (killed by a signal?)", kind=FailureKind.REMOTE_EXIT)
    if lingered:
        on_line("WARN: the command left a process running that holds its output open; "
                "its later output is not collected")
    return status


def exec_collect(transport: paramiko.Transport, command: str, timeout: float,
                 session_retry: float = SESSION_RETRY) -> tuple[int, str]:
    """Run a short housekeeping command and return (status, output)."""
    deadline = time.monotonic() + timeout
    try:
        channel = open_session(transport, timeout, session_retry)
        channel.set_combine_stderr(True)
        channel.settimeout(POLL)
        channel.exec_command(command)
        chunks: list[bytes] = []
        while True:
            if time.monotonic() >= deadline:
                channel.close()
                raise Failure(f"housekeeping command timed out after {timeout:g}s")
            try:
                data = channel.recv(65536)
            except socket.timeout:
                continue
            if not data:
                break
            chunks.append(data)
        if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
            raise Failure(f"housekeeping command timed out after {timeout:g}s")
        status = channel.exit_status
        channel.close()
        return status, b"".join(chunks).decode("utf-8", errors="replace")
    except SessionRefused as err:
        raise Failure(f"housekeeping command failed: {err}") from None
    except (paramiko.SSHException, OSError, EOFError) as err:
        raise Failure(f"housekeeping command failed: {describe(err)}") from None
