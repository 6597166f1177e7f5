"""Which Prefect API a job talks to, decided before Prefect is imported.

Prefect's ephemeral mode starts a temporary server in every process, which costs more than a
whole job (docs/performance.md). So unless ``PREFECT_API_URL`` is set, one local server under
``$AUTOEXEC_HOME/prefect`` is started on first use and reused by every later job."""
from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from autoexec.conf.settings import load_settings

from autoexec.conf.errors import AutoexecError

SERVER_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "500",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_READ_BATCH_SIZE": "200",
    "PREFECT_UI_ENABLED": "true",
}


class PrefectServerError(AutoexecError):
    pass


def healthy(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as resp:
            status: int = resp.status
            return status == 200
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _configured_api_url() -> str | None:
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    profiles = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")) / "profiles.toml"
    if profiles.exists():
        text = profiles.read_text(encoding="utf-8", errors="replace")
        if "PREFECT_API_URL" in text:
            return "profile"
    return None


def configured_api_url() -> str | None:
    """The API a configured Prefect (env or profile) points at, or ``None``."""
    found = _configured_api_url()
    if found != "profile":
        return found
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def ui_url(api_url: str) -> str:
    """The UI is served by the same server, at its root."""
    return api_url[:-len("/api")] if api_url.endswith("/api") else api_url


def server_dir(home: Path) -> Path:
    return home / "prefect"


def read_state(home: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((server_dir(home) / "server.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _live_url(home: Path) -> str | None:
    """The URL of the server this home started, if it answers."""
    state = read_state(home)
    url = state.get("url") if state else None
    return url if isinstance(url, str) and healthy(url) else None


def start_wait() -> float:
    """How long a first start may take: a loaded 2-core runner needs far longer than an idle one."""
    return load_settings().prefect_start_secs


def ensure_api(home: Path, wait: float | None = None) -> str | None:
    """Make ``PREFECT_API_URL`` point at a live server; returns the URL (``None``: a Prefect
    profile names it)."""
    configured = _configured_api_url()
    if configured:
        return configured if configured != "profile" else None
    live = _live_url(home)
    if live:
        os.environ["PREFECT_API_URL"] = live
        return live
    directory = server_dir(home)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "server.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two jobs starting at once must not start two servers
        live = _live_url(home)
        if live:
            os.environ["PREFECT_API_URL"] = live
            return live
        url = start_server(home, start_wait() if wait is None else wait)
    os.environ["PREFECT_API_URL"] = url
    return url


def lower_priority(niceness: int, pid: int = 0) -> None:
    """Lowers a session leader's priority (``pid`` 0: this process). ``nice`` alone does nothing
    against other sessions where the kernel schedules by session (``sched_autogroup``, on by
    default in Debian/Ubuntu kernels): each session is then weighed as one group, one share per
    group, whatever its members' nice values. So the group's nice (``/proc/<pid>/autogroup``) is
    set too; the group is the leader's own since it started the session."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, pid) + niceness))
    except OSError:
        pass
    target = pid or os.getpid()
    if os.getsid(target) == target:
        try:
            with open(f"/proc/{target}/autogroup", "w") as fh:
                fh.write(str(niceness))
        except OSError:
            pass  # no autogroup scheduling here: the plain nice value is what counts


def _server_niceness() -> int:
    return load_settings().prefect_server_nice


def start_server(home: Path, wait: float) -> str:
    directory = server_dir(home)
    port = load_settings().prefect_port or _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "PREFECT_UI_", "PREFECT_SERVER_UI_"))}
    env.update(SERVER_ENV)
    # The UI asks its browser to call the API at this URL; Prefect's default (127.0.0.1:4200) is
    # wrong for a server on any other port, and every page would say "Can't connect to Server API".
    env["PREFECT_UI_API_URL"] = url
    env["PREFECT_SERVER_UI_API_URL"] = url
    env["PREFECT_HOME"] = str(directory)
    log_dir = home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "prefect-server.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=str(directory),
        )
    # The record may lag, the jobs may not: the server's CPU per recorded node would otherwise be
    # taken from the tools and SSH handshakes on a small runner (docs/performance.md).
    lower_priority(_server_niceness(), proc.pid)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if healthy(url, 0.5):
            (directory / "server.json").write_text(json.dumps({"pid": proc.pid, "url": url}), encoding="utf-8")
            return url
        if proc.poll() is not None:
            raise PrefectServerError(f"the local Prefect server exited with status {proc.returncode}; "
                                     f"see {log_dir / 'prefect-server.log'}")
        time.sleep(0.25)
    proc.terminate()
    raise PrefectServerError(f"the local Prefect server did not answer on {url} within {wait:.0f}s; "
                             f"see {log_dir / 'prefect-server.log'}")


def stop_server(home: Path) -> bool:
    state = read_state(home)
    if not state:
        return False
    try:
        os.killpg(int(state["pid"]), signal.SIGTERM)
    except (ProcessLookupError, PermissionError, ValueError):
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and healthy(state["url"], 0.3):
        time.sleep(0.2)
    try:
        os.killpg(int(state["pid"]), signal.SIGKILL)
    except (ProcessLookupError, PermissionError, ValueError):
        pass
    (server_dir(home) / "server.json").unlink(missing_ok=True)
    return True


def exit_after_draining(code: int, timeout: float) -> None:
    """Ends a process that ran Prefect client code. Prefect's exit-time shutdown of its background
    services is slow (docs/performance.md); what matters of it, queued run events and logs,
    is drained here explicitly, and the process then ends at once. Everything of the caller's own
    must already be closed: ``os._exit`` runs no ``atexit`` handlers."""
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=timeout)
        EventsWorker.drain_all(timeout=timeout)
    except Exception:  # noqa: BLE001 - fall back to the normal, slower exit
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def quiet_client_defaults() -> None:
    """A CLI job prints its own console log; Prefect's INFO chatter would drown it."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
