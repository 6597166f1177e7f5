"""``python -m autoexec.flows.recorder``: the one recorder of a machine (of an ``AUTOEXEC_HOME``).

CLI jobs never import Prefect; they append events to spool files, and this process turns each
into its job's Prefect record, passes Cancel/Pause from the UI to the job, and loses nothing
across server outages or its own restarts. Life cycle: docs/design.md."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from autoexec.events.stream import decode
from autoexec.jobdir.fileio import append_once
from autoexec.jobdir.lock import process_alive
from autoexec.conf.settings import SettingsError, load_settings

SPOOL_SUFFIX = ".jsonl"
CKPT_SUFFIX = ".ckpt"
POLL_SECONDS = 0.1
WATCH_SECONDS = 1.0
CHECKPOINT_SECONDS = 0.5
LOCK_FD_ENV = "AUTOEXEC_RECORDER_LOCK_FD"  # the locked descriptor a starting job hands over


def spool_dir(home: Path) -> Path:
    return home / "prefect" / "spool"


def lock_path(home: Path) -> Path:
    return home / "prefect" / "recorder.lock"


def pid_path(home: Path) -> Path:
    return home / "prefect" / "recorder.pid"


def recorder_running(home: Path) -> bool:
    """Whether a recorder holds this home's lock (never races: the lock is the recorder's life)."""
    path = lock_path(home)
    if not path.exists():
        return False
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def ensure_recorder(home: Path, verbose: bool = False, idle_secs: str | None = None) -> str | None:
    """Starts this home's recorder unless one runs; returns why it could not, else ``None``.

    Cheap (one ``flock`` try) so that every CLI job can call it. The caller takes the recorder's
    lock itself and hands the locked descriptor to the child, so that of a burst of jobs starting
    together exactly one starts a recorder: the others find the lock held and start nothing."""
    try:
        (home / "logs").mkdir(parents=True, exist_ok=True)
        spool_dir(home).mkdir(parents=True, exist_ok=True)
        lock = open(lock_path(home), "a")
    except OSError as exc:
        return str(exc)
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a recorder serves this home, or another job is starting it
        env = {k: v for k, v in os.environ.items() if k != "AUTOEXEC_NODE_PASSWORD"}
        env["AUTOEXEC_HOME"] = str(home)
        env[LOCK_FD_ENV] = str(lock.fileno())
        if verbose:
            env["AUTOEXEC_RECORDER_VERBOSE"] = "1"
        if idle_secs is not None:
            env["AUTOEXEC_RECORDER_IDLE_SECS"] = idle_secs
        try:
            with open(home / "logs" / "prefect-recorder.log", "ab") as log:
                subprocess.Popen([sys.executable, "-m", "autoexec.flows.recorder"], env=env,
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, close_fds=True, pass_fds=(lock.fileno(),))
        except OSError as exc:
            return str(exc)
    return None  # closing our descriptor leaves the lock with the child's copy of it


def stop_recorder(home: Path, timeout: float = 10.0) -> bool:
    try:
        pid = int(pid_path(home).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    if not recorder_running(home):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while recorder_running(home) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def console_warn(console: str | None, text: str) -> None:
    """A run whose record lags gets one line where an operator looks: the job's console log."""
    if not console:
        return
    try:
        append_once(console, f"{time.strftime('%H:%M:%S ')}WARN: {text}\n".encode(), create=False)
    except OSError:
        return


class SpoolConsumer(threading.Thread):
    """Follows one spool from its checkpoint and applies its events to the job's record."""

    def __init__(self, path: Path, api: Any, catalog: Callable[[Any], Any], stop: threading.Event,
                 log: logging.Logger) -> None:
        super().__init__(name=f"spool-{path.stem}", daemon=True)
        self.path = path
        self.ckpt = path.with_suffix(CKPT_SUFFIX)
        self.api = api.view(self._on_retry)  # its retries are reported for this spool
        self.catalog = catalog
        self.stop = stop
        self.log = log
        self.offset = 0
        self.mirror: Any = None
        self.console: str | None = None
        self.done = False
        self.failed_at: float | None = None
        self.signalled: set[int] = set()
        self._warned = False
        self._saved = 0.0

    # --- checkpoint -------------------------------------------------------------------------
    def _load(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.ckpt.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        self.offset = int(data.get("offset", 0))
        state = data.get("state")
        return state if isinstance(state, dict) else None

    def save(self) -> None:
        if self.done or self.mirror is None or not self.path.exists():
            return
        tmp = self.ckpt.with_suffix(".ckpt.tmp")
        try:
            tmp.write_text(json.dumps({"offset": self.offset, "state": self.mirror.state}), encoding="utf-8")
            os.replace(tmp, self.ckpt)
        except OSError:
            pass
        self._saved = time.monotonic()

    # --- the loop ---------------------------------------------------------------------------
    def _on_retry(self, problem: str) -> None:
        if not self._warned:
            self._warned = True
            console_warn(self.console, f"Prefect record of this run delayed: {problem}; "
                         f"the recorder retries and writes it once the API answers (spool {self.path}).")
            self.log.warning("%s: %s (retrying)", self.path.name, problem)

    def run(self) -> None:
        from autoexec.flows.api import Stopped

        try:
            self._follow()
        except Stopped:
            pass
        except Exception:  # noqa: BLE001 - one broken spool must not stop the others; retried later
            self.failed_at = time.monotonic()
            self.log.error("%s: %s", self.path.name, traceback.format_exc())
        finally:
            self.save()

    def _follow(self) -> None:
        from autoexec.flows.record import RunRecord

        state = self._load()
        if state is not None:
            self.console = (state.get("job") or {}).get("console")
        mirror: Any = None
        tail = b""
        quiet_since = time.monotonic()
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            while mirror is None or not mirror.ended:
                chunk = fh.read(1 << 16)
                if chunk:
                    quiet_since = time.monotonic()
                    lines = (tail + chunk).split(b"\n")
                    tail = lines.pop()
                    for line in lines:
                        event = decode(line)
                        if event is not None:
                            if event.get("event") == "job_start":
                                self.console = event.get("console")
                            if mirror is None:  # the catalog needs the API: once we know whom to warn
                                mirror = self.mirror = RunRecord(self.api, self.catalog(self.api), state=state,
                                                                 say=lambda t: self.log.warning("%s", t))
                            mirror.apply(event)
                        self.offset += len(line) + 1
                        if mirror is not None and mirror.ended:
                            break
                        if time.monotonic() - self._saved > CHECKPOINT_SECONDS:
                            self.save()
                    continue
                if mirror is not None:
                    mirror.tick()
                if time.monotonic() - quiet_since > 1.0 and self._job_gone(fh):
                    if mirror is not None:
                        mirror.crash("the job process ended without finishing its record")
                    break
                if self.stop.wait(POLL_SECONDS):
                    from autoexec.flows.api import Stopped
                    raise Stopped(self.path.name)
        self.done = True
        self.path.unlink(missing_ok=True)
        self.ckpt.unlink(missing_ok=True)

    def _job_gone(self, fh: Any) -> bool:
        job = (self.mirror.state.get("job") if self.mirror is not None else None) or {}
        if not job.get("pid"):
            # no job_start yet: a writer that never wrote one is given up after a while
            try:
                return time.time() - self.path.stat().st_mtime > 60
            except OSError:
                return True
        if process_alive(int(job["pid"]), job.get("start_time")):
            return False
        if fh.read(1):  # written just before it ended: read that first
            fh.seek(-1, os.SEEK_CUR)
            return False
        return True

    def signal_job(self, sig: int) -> None:
        """Cancel/Pause seen on the run: the job's own signals, once each."""
        if sig in self.signalled or self.mirror is None or self.mirror.ended:
            return
        job = self.mirror.state.get("job") or {}
        pid = int(job.get("pid") or 0)
        if pid and process_alive(pid, job.get("start_time")):
            self.signalled.add(sig)
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


class RecorderService:
    def __init__(self, home: Path, idle_secs: float, log: logging.Logger) -> None:
        self.home = home
        self.idle_secs = idle_secs
        self.log = log
        self.stop = threading.Event()
        self.consumers: dict[Path, SpoolConsumer] = {}
        self.api: Any = None
        self._catalog: Any = None
        self._catalog_lock = threading.Lock()

    def catalog(self, api: Any) -> Any:
        """Looked up once, through the asking spool's view of the API (its retries are its own)."""
        from autoexec.flows.record import Catalog

        with self._catalog_lock:
            if self._catalog is None:
                self._catalog = Catalog.ensure(api)
            return self._catalog

    def connect(self) -> bool:
        from autoexec.flows.api import PrefectApi
        from autoexec.conf.prefect_server import PrefectServerError, configured_api_url, ensure_api
        from autoexec.conf.retry import Backoff, RetryCancelled, retry

        try:
            url = retry(lambda: ensure_api(self.home) or configured_api_url(), attempts=None,
                        backoff=Backoff(first=1.0, cap=30.0), cancel=self.stop, retry_on=(PrefectServerError,),
                        on_retry=lambda exc, _n, _delay: self.log.warning("no Prefect API yet: %s", exc))
        except RetryCancelled:
            return False
        if not url:
            self.log.error("no Prefect API configured (the recorder needs a server: the embedded one "
                           "or PREFECT_API_URL)")
            return False
        self.api = PrefectApi(url, self.stop, concurrency=load_settings().recorder_api_concurrency)
        self.log.info("recording into %s", url)
        return True

    def serve(self) -> int:
        spools = spool_dir(self.home)
        spools.mkdir(parents=True, exist_ok=True)
        last_busy = time.monotonic()
        last_watch = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            try:
                found = sorted(spools.glob("*" + SPOOL_SUFFIX))
            except OSError:
                break  # the home went away
            for path in found:
                consumer = self.consumers.get(path)
                if consumer is None or (not consumer.is_alive() and consumer.failed_at is not None
                                        and now - consumer.failed_at > 10):
                    consumer = SpoolConsumer(path, self.api, self.catalog, self.stop, self.log)
                    self.consumers[path] = consumer
                    consumer.start()
            for path, consumer in list(self.consumers.items()):
                if consumer.done or (not consumer.is_alive() and not path.exists()):
                    del self.consumers[path]
            if self.consumers or found:
                last_busy = now
            elif self.idle_secs and now - last_busy > self.idle_secs:
                self.log.info("idle for %.0f s: exiting", self.idle_secs)
                break
            if now - last_watch >= WATCH_SECONDS:
                last_watch = now
                self.watch()
            if not spools.is_dir():
                break
            self.stop.wait(0.2)
        return self.shutdown()

    def watch(self) -> None:
        """Cancel/Pause of CLI runs, one query for all live jobs."""
        live = {c.mirror.flow_run_id: c for c in list(self.consumers.values())
                if c.mirror is not None and c.mirror.flow_run_id and c.mirror.state.get("own") and not c.mirror.ended}
        if not live or self.api is None:
            return
        runs = self.api.once("POST", "flow_runs/filter", {"flow_runs": {"id": {"any_": list(live)}}, "limit": len(live)})
        for run in runs or []:  # a failed look: the next one tries again
            consumer = live.get(str(run.get("id")))
            state_type = run.get("state_type")
            if consumer is None:
                continue
            if state_type in ("CANCELLING", "CANCELLED"):
                consumer.signal_job(signal.SIGTERM)
            elif state_type == "PAUSED":
                consumer.signal_job(signal.SIGUSR1)

    def shutdown(self) -> int:
        self.stop.set()
        deadline = time.monotonic() + 4.0
        for consumer in list(self.consumers.values()):
            consumer.join(max(0.0, deadline - time.monotonic()))
        for consumer in list(self.consumers.values()):
            consumer.save()
        return 0


def _logger(verbose: bool) -> logging.Logger:
    log = logging.getLogger("autoexec.recorder")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(f"%(asctime)s recorder[{os.getpid()}] %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    return log


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"autoexec recorder: error: {exc}", file=sys.stderr)
        return 2
    home = settings.autoexec_home()
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    lock = _take_lock(home)
    if lock is None:
        return 0  # another recorder serves this home
    pid_path(home).write_text(f"{os.getpid()}\n", encoding="utf-8")
    log = _logger(settings.recorder_verbose)
    service = RecorderService(home, settings.recorder_idle_secs, log)

    def on_term(signum: int, frame: object) -> None:
        service.stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_term)
    log.info("serving %s", spool_dir(home))
    try:
        if not service.connect():
            return 1 if not service.stop.is_set() else 0
        _lower_priority(settings.recorder_nice)
        return service.serve()
    finally:
        try:
            if pid_path(home).read_text().split()[0] == str(os.getpid()):
                pid_path(home).unlink()
        except (OSError, IndexError):
            pass


def _take_lock(home: Path) -> Any:
    """The home's recorder lock: the descriptor the starting job handed over (already locked), or
    our own if started by hand; ``None`` when another recorder holds it."""
    handed = os.environ.pop(LOCK_FD_ENV, "")
    if handed.isdigit():
        try:
            return os.fdopen(int(handed), "a")
        except OSError:
            pass
    lock = open(lock_path(home), "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def _lower_priority(niceness: int) -> None:
    """The record may lag; the jobs and their targets must not. Done after ``ensure_api`` so that
    an embedded server started from here keeps normal priority."""
    from autoexec.conf.prefect_server import lower_priority

    lower_priority(niceness)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
