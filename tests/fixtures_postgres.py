"""A throwaway PostgreSQL cluster and a Prefect server on it, once per test session.

The multi-host setup documented for autoexec runs Prefect on PostgreSQL (the embedded SQLite
server answers 503 "database is locked" under concurrent runs), so the multi-runner tests run
against exactly that: the distribution's PostgreSQL binaries, a cluster in a temp dir owned by the
``postgres`` user (PostgreSQL refuses to run as root), a random port, and ``prefect server start``
with ``PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://...``. Skipped, with the reason,
where the binaries are missing or the cluster cannot start.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from autoexec.conf.prefect_server import SERVER_ENV


def postgres_bindir() -> Path | None:
    """The directory holding initdb/pg_ctl: PATH first, then Debian's versioned layout, newest first."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as resp:  # noqa: S310 - loopback
            return resp.status == 200
    except OSError:
        return False


@dataclass
class PostgresCluster:
    bindir: Path
    root: Path
    port: int
    user: str

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {"user": self.user} if os.geteuid() == 0 else {}
        return subprocess.run([str(self.bindir / argv[0]), *argv[1:]], capture_output=True, text=True,
                              timeout=timeout, cwd=self.root, **kwargs)


def start_cluster(root: Path) -> PostgresCluster:
    """initdb + pg_ctl start; raises RuntimeError with the server log on failure."""
    bindir = postgres_bindir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL binaries not found (apt-get install postgresql)")
    user = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            raise FileNotFoundError("running as root and there is no 'postgres' user to run PostgreSQL as") from None
        os.chown(root, entry.pw_uid, entry.pw_gid)
        user = "postgres"
    cluster = PostgresCluster(bindir, root, free_port(), user)
    init = cluster.run("initdb", "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed: {init.stdout}{init.stderr}")
    options = (f"-p {cluster.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
               f"-c full_page_writes=off -c max_connections=200")
    start = cluster.run("pg_ctl", "-D", str(cluster.data), "-l", str(cluster.log), "-o", options, "-w", "-t", "120", "start",
                        timeout=150)
    if start.returncode != 0:
        raise RuntimeError(f"pg_ctl start failed: {start.stdout}{start.stderr}\n--- server log ---\n{_tail(cluster.log)}")
    created = cluster.run("createdb", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "prefect")
    if created.returncode != 0:
        cluster_stop(cluster)
        raise RuntimeError(f"createdb failed: {created.stderr}\n--- server log ---\n{_tail(cluster.log)}")
    return cluster


def cluster_stop(cluster: PostgresCluster) -> None:
    cluster.run("pg_ctl", "-D", str(cluster.data), "-m", "immediate", "-w", "-t", "60", "stop", timeout=90)


@dataclass
class PrefectOnPostgres:
    url: str
    """``http://127.0.0.1:<port>/api``"""
    database_url: str
    root: Path
    log: Path


def start_prefect(database_url: str, root: Path, wait: float = 240,
                  extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], PrefectOnPostgres]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(SERVER_ENV)
    env.update({"PREFECT_HOME": str(root / "prefect-home"), "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
                "PREFECT_UI_ENABLED": "false", **(extra_env or {})})
    log = root / "prefect-server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=root)
    deadline = time.monotonic() + wait
    while not _healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process_group(proc)
            raise RuntimeError(f"Prefect server on PostgreSQL did not come up (exit {proc.returncode}):\n{_tail(log)}")
        time.sleep(0.5)
    return proc, PrefectOnPostgres(url, database_url, root, log)


def stop_process_group(proc: subprocess.Popen[bytes], grace: float = 10) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


@pytest.fixture(scope="session")
def prefect_postgres() -> Iterator[PrefectOnPostgres]:
    """A Prefect server on a fresh PostgreSQL cluster, for the whole session."""
    root = Path(tempfile.mkdtemp(prefix="autoexec-pg-"))
    try:
        cluster = start_cluster(root)
    except FileNotFoundError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"no PostgreSQL: {exc}")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL cannot start here: {exc}")
    server = None
    try:
        server, info = start_prefect(cluster.url("prefect"), root)
        yield info
    finally:
        if server is not None:
            stop_process_group(server)
        cluster_stop(cluster)
        shutil.rmtree(root, ignore_errors=True)
