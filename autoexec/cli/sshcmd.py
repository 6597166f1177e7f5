"""``sshcmd``: run one command on one or many hosts over SSH (used to bootstrap agents).

Unlike the original, blank and ``#`` lines of the hosts file are skipped, a one-field line uses
``--user``/``--password``, a missing hosts file is a one-line error (exit 2), and hosts run in
parallel with every output line prefixed by its host. The password may come from
``SSHCMD_PASSWORD`` so it stays out of the process list."""
from __future__ import annotations

import argparse
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from autoexec.conf.errors import AutoexecError
from autoexec.transports.base import Endpoint, Timeouts
from autoexec.transports.ssh import SshTransport

PASSWORD_ENV = "SSHCMD_PASSWORD"


class HostsFileError(AutoexecError):
    """A hosts file that cannot be used; ``str`` is the one-line reason."""


@dataclass(frozen=True)
class HostEntry:
    host: str
    port: int
    user: str
    password: str = field(repr=False, default="")

    @property
    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"


def _split_host_port(text: str, default_port: int, where: str) -> tuple[str, int]:
    host, port_text = text, ""
    if text.startswith("["):  # [v6addr]:port
        close = text.find("]")
        host, rest = text[1:close], text[close + 1:]
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise HostsFileError(f"{where}: bad port {port_text!r}")
    return host, int(port_text)


def parse_hosts(text: str, default_port: int, default_user: str, default_password: str,
                source: str = "hosts file") -> list[HostEntry]:
    """Parse the three line formats: ``host[:port] user password``, ``host[:port] password``,
    ``host[:port]``. Fields beyond the third are ignored, as in the original."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        host, port = _split_host_port(fields[0], default_port, f"{source} line {number}")
        if len(fields) >= 3:
            entries.append(HostEntry(host, port, fields[1], fields[2]))
        elif len(fields) == 2:
            entries.append(HostEntry(host, port, default_user, fields[1]))
        else:
            entries.append(HostEntry(host, port, default_user, default_password))
    return entries


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sshcmd", description="Run a command on hosts over SSH.")
    parser.add_argument("-v", "--verbose", action="store_true", help="accepted for compatibility")
    parser.add_argument("--host", default="")
    parser.add_argument("--port", default="22")
    parser.add_argument("--user", default="root")
    parser.add_argument("--password", default=None,
                        help=f"default: ${PASSWORD_ENV} (prefer it: arguments are visible to other users)")
    parser.add_argument("--hostsfile", default="")
    parser.add_argument("--parallel", type=int, default=16, help="hosts handled at once (default 16)")
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=None, help="limit for the command itself")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    return parser


class _Printer:
    """Serialises output of parallel hosts line by line."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def __call__(self, text: str) -> None:
        with self._lock:
            self._out.write(text + "\n")
            self._out.flush()

    def for_host(self, label: str) -> Callable[[str], None]:
        return lambda line: self(f"{label}: {line}")


def run_on_host(entry: HostEntry, argv: list[str], timeouts: Timeouts, printer: _Printer,
                cancel: threading.Event) -> str | None:
    """Run ``argv`` on one host; returns ``None`` on success or the reason it failed."""
    transport = SshTransport(Endpoint(entry.host, entry.port, entry.user, entry.password), timeouts)
    try:
        result = transport.run_command(argv, printer.for_host(entry.label), cancel, timeout=timeouts.op)
    finally:
        transport.close()
    if result.error:
        printer(f"ERROR: {entry.label} execute failed, {result.error}")
        return result.error
    if result.exit_code != 0:
        printer(f"ERROR: {entry.label} execute failed, exit code {result.exit_code}.")
        return f"exit code {result.exit_code}"
    printer(f"FINE: {entry.label} execute success.")
    return None


def remote_argv(command: list[str]) -> list[str]:
    """One argument is a command line for the remote shell, as ``ssh host 'cmd1; cmd2'`` reads it;
    several arguments are one command's argv, each passed as is (no remote expansion)."""
    if len(command) == 1:
        return ["sh", "-c", command[0]]
    return command


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    printer = _Printer(out or sys.stdout)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        printer("ERROR: Command not defined.")
        return 2
    command = remote_argv(command)
    try:
        port = int(args.port) if str(args.port).strip() else 22
    except ValueError:
        printer(f"ERROR: bad --port {args.port!r}")
        return 2
    password = args.password if args.password is not None else os.environ.get(PASSWORD_ENV, "")
    try:
        if args.hostsfile:
            try:
                text = Path(args.hostsfile).read_text(encoding="utf-8")
            except OSError as err:
                printer(f"ERROR: cannot read hosts file {args.hostsfile}: {err.strerror or err}")
                return 2
            hosts = parse_hosts(text, port, args.user, password, args.hostsfile)
        elif args.host:
            host, port = _split_host_port(args.host, port, "--host")
            hosts = [HostEntry(host, port, args.user, password)]
        else:
            printer("ERROR: give --host or --hostsfile.")
            return 2
    except HostsFileError as err:
        printer(f"ERROR: {err}")
        return 2
    if not hosts:
        printer("ERROR: no hosts to run on.")
        return 2
    timeouts = Timeouts(connect=args.connect_timeout, op=args.timeout or Timeouts().op)
    cancel = threading.Event()
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        outcomes = list(pool.map(lambda e: run_on_host(e, command, timeouts, printer, cancel), hosts))
    failed = [entry.label for entry, error in zip(hosts, outcomes, strict=True) if error is not None]
    if failed:
        printer(f"ERROR: {len(failed)} of {len(hosts)} host(s) failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
