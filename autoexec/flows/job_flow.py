"""The deployment's flow: the engine runs inside the flow run exactly as it runs from the CLI.

A worker starts this flow run; it builds the job as the CLI does and runs the same thread-pool
engine (:func:`autoexec.engine.run.run_engine`). The engine's events go through an in-process
queue to a :class:`~autoexec.flows.record.RunRecord` on a thread of this process, which records
the group subflow runs and node task runs under this flow run: the record is defined once, for
CLI and deployment runs alike. Cancel and Pause on this run reach the job through
:class:`~autoexec.flows.prefect_control.RunWatcher`; a paused job ends the run Suspended, and
"Resume" runs this flow again on a worker, skipping what already succeeded (the status files).
"""
from __future__ import annotations

import json
import logging
import queue
import threading
from typing import Any

from prefect import flow, get_run_logger
from prefect.context import get_run_context
from prefect.exceptions import MissingContextError
from prefect.states import Cancelled, Completed, Failed

from autoexec.engine.jobloop import JobOutcome
from autoexec.events.stream import Event
from autoexec.flows.prefect_control import RunWatcher, suspend_current_run
from autoexec.load.loader import JobRequest
from autoexec.models.status import Status
from autoexec.engine.run import QueueSink, run_engine
from autoexec.job.runtime import JobRuntime


class RecordThread:
    """Consumes the queue into this flow run's record; never holds up or fails the job."""

    def __init__(self, sink: QueueSink, flow_run_id: str, say: Any, mask: Any = None) -> None:
        self.queue = sink.queue
        self.mask = mask
        self.flow_run_id = flow_run_id
        self.say = say
        self.stop = threading.Event()
        self.end: Event | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="autoexec-record", daemon=True)

    def start(self) -> "RecordThread":
        self._thread.start()
        return self

    def _api(self) -> Any:
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY, PREFECT_API_URL

        from autoexec.flows.api import PrefectApi, auth_headers

        url = PREFECT_API_URL.value()
        if not url:
            raise RuntimeError("no PREFECT_API_URL in this flow run")
        key = PREFECT_API_KEY.value()
        auth = PREFECT_API_AUTH_STRING.value()
        return PrefectApi(url, self.stop, headers=auth_headers(key.get_secret_value() if key else "",
                                                               auth.get_secret_value() if auth else ""))

    def _run(self) -> None:
        from autoexec.flows.api import Stopped
        from autoexec.flows.record import Catalog, RunRecord

        try:
            api = self._api()
            mirror = RunRecord(api, Catalog.ensure(api, with_cli_deployment=False), flow_run_id=self.flow_run_id,
                               mask=self.mask)
            while not mirror.ended:
                try:
                    event = self.queue.get(timeout=0.2)
                except queue.Empty:
                    mirror.tick()
                    continue
                mirror.apply(event)
                mirror.tick()
        except Stopped:
            pass
        except Exception as exc:  # noqa: BLE001 - the record may be incomplete, the job is not
            self.error = f"{type(exc).__name__}: {exc}"
            self.say(f"WARN: Prefect record of this run incomplete: {self.error}")

    def finish(self, timeout: float) -> None:
        self._thread.join(timeout)
        self.stop.set()
        self._thread.join(5)


class _EndCatcher:
    """Keeps the ``job_end`` event: its message (e.g. "nothing to do") becomes the run's state message."""

    def __init__(self, inner: QueueSink) -> None:
        self.inner = inner
        self.end: Event | None = None

    def emit(self, event: Event) -> None:
        if event.get("event") == "job_end":
            self.end = event
        self.inner.emit(event)


def _log(message: str) -> None:
    try:
        get_run_logger().info(message)
    except MissingContextError:  # outside a run context (tests)
        pass


def _current_flow_run() -> Any:
    try:
        return getattr(get_run_context(), "flow_run", None)
    except MissingContextError:  # outside a flow run
        return None


def run_in_flow_run(rt: JobRuntime, flow_run_id: str) -> tuple[JobOutcome, str]:
    """The engine, its record and its Cancel/Pause watcher, inside the running flow run."""
    if rt.job_lock is not None:
        rt.job_lock.record(flow_run_id)  # --abort/--pause and a refused second run name the run
    watcher = _start_watcher(rt, flow_run_id)
    sink = QueueSink()
    catcher = _EndCatcher(sink)
    record = RecordThread(sink, flow_run_id, say=rt.console.line, mask=rt.masker).start()
    try:
        outcome = run_engine(rt, catcher)
    finally:
        if watcher is not None:
            watcher.stop()
        record.finish(timeout=60)
    message = str((catcher.end or {}).get("message") or f"job {outcome.status}")
    return outcome, message


def _start_watcher(rt: JobRuntime, flow_run_id: str) -> RunWatcher | None:
    """Cancel/Pause from the Prefect UI or API reach the job through its own controls."""
    from autoexec.conf.settings import load_settings

    settings = load_settings()
    if not settings.prefect_watch:
        return None
    try:
        watcher = RunWatcher(rt.control, flow_run_id, say=rt.console.line, interval=settings.prefect_watch_seconds)
    except Exception as exc:  # noqa: BLE001 - no API client: signals and --abort still work
        rt.console.line(f"WARN: Cannot watch the Prefect flow run for cancel/pause: {exc}")
        return None
    return watcher.start()


class _OwnOutcomeFilter(logging.Filter):
    """Under a worker, Prefect's engine re-raises the Failed/Cancelled state this flow returned
    and logs that exception's traceback at ERROR into the run. The state already says what
    happened, in one line; the traceback of our own return value only buries it."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.exceptions import CancelledRun, FailedRun

        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, (FailedRun, CancelledRun))
                    and record.getMessage().startswith("Engine execution exited with unexpected exception"))


def _quiet_own_outcome() -> None:
    run_logger = logging.getLogger("prefect.flow_runs")
    if not any(isinstance(f, _OwnOutcomeFilter) for f in run_logger.filters):
        run_logger.addFilter(_OwnOutcomeFilter())


def outcome_state(outcome: JobOutcome, message: str = "") -> Any:
    """Failed/Cancelled carry the summary as text: under a worker the engine turns a failed state's
    data into an exception, and a dict there fails with a TypeError instead of FailedRun."""
    summary = outcome.summary()
    message = message or f"job {outcome.status}"
    if outcome.status.failed:
        _quiet_own_outcome()
    if outcome.status is Status.FAILED:
        return Failed(message=message, data=json.dumps(summary))
    if outcome.status is Status.ABORTED:
        return Cancelled(message=message, data=json.dumps(summary))
    return Completed(message=message, data=summary)


def _job_run_name() -> str:
    """``job-<id>``; a part of a coordinated job adds its runner and step."""
    from prefect.runtime import flow_run

    from autoexec.multirunner.plan import part_run_name, step_label

    p = flow_run.parameters
    if not p.get("runner_id"):
        return f"job-{p.get('job_id')}"
    return part_run_name(str(p.get("job_id")), int(p["runner_id"]),
                         step_label(p.get("phase_groups", ""), p.get("round_no"), p.get("phases")))


@flow(name="autoexec-job", flow_run_name=_job_run_name, validate_parameters=False)
def job_flow(job_id: str | int, exec_user: str = "anonymous", params_file: str = "", nodes_file: str = "",
             params: dict[str, Any] | None = None, nodes: str | None = None, force: bool = False,
             first_fire: bool = False, dev_mode: bool = True, no_fire_next: bool = False,
             pass_through_env: dict[str, Any] | None = None, phase_groups: str | int = "", phases: str = "",
             node_ids: str | int = "", runner_id: int | None = None, round_no: int | None = None,
             after_runs: list[str] | None = None, group_nodes: dict[str, str] | None = None,
             phase_nodes: dict[str, str] | None = None) -> Any:
    """Entry point for deployments and API-triggered runs: same semantics as the CLI. Ids may come
    as numbers (``prefect deployment run -p job_id=9001`` sends an integer). ``runner_id`` and
    ``round_no`` narrow the run to one runner's nodes (and one grayScale round) of a job a
    coordinator spreads over several runner hosts; such a part waits for the runs in
    ``after_runs`` (the step before) to complete before it starts. ``group_nodes`` (groupNo ->
    JSON lines) and ``phase_nodes`` (phase name -> JSON lines) are the per-group and per-phase
    nodes files of the job dir; given, they replace the ones there."""
    given = dict(locals())  # exactly this flow's parameters, by name
    from autoexec.load.loader import release_runtime
    from autoexec.load.production import build_job_runtime

    req = JobRequest.from_flow_parameters(given)
    job_id = req.job_id
    flow_run = _current_flow_run()
    flow_run_id = str(flow_run.id) if flow_run is not None else None
    if runner_id and flow_run_id is not None:  # a part of a coordinated job: its coordinator watches this
        from autoexec.multirunner.heartbeat import start_heartbeat

        start_heartbeat(flow_run_id)
    if after_runs:  # before the lock: the step before may be running this job here right now
        from autoexec.multirunner.gate import wait_for_previous_step

        blocked = wait_for_previous_step(list(after_runs), flow_run_id)
        if blocked:
            return Cancelled(message=f"part not run: {blocked}"[:500])
    from autoexec.conf.config import autoexec_home
    from autoexec.job.control import JobControl
    from autoexec.jobdir.layout import JobDir, UnsafeName
    from autoexec.jobdir.lock import JobBusy, JobLock
    from autoexec.models.params import JobInputError

    # As in the CLI: signals and the job's lock before anything slow, so a second trigger of a
    # running job (a retried REST call) ends here without touching the job.
    control = JobControl()
    control.install_signal_handlers()
    try:
        root = JobDir.for_job(autoexec_home() / "data", job_id).root
    except UnsafeName as exc:
        raise JobInputError(f"job_id: {exc}") from None
    try:
        lock = JobLock.acquire(root, job_id, flow_run_id)
    except JobBusy as exc:
        _log(str(exc))
        return Cancelled(message=str(exc))
    try:
        if flow_run is None:
            raise RuntimeError("job_flow runs as a Prefect flow run (a deployment or a direct call)")
        lock.honour_request(control)
        if flow_run.run_count > 1:
            req.first_fire = False  # a resume or retry continues this generation's console log
        rt = build_job_runtime(req, control=control, job_lock=lock)
        try:
            outcome, message = run_in_flow_run(rt, str(flow_run.id))
        finally:
            release_runtime(rt)
    finally:
        lock.release()
    _log(f"job {rt.job_id} {outcome.status}: {message}")
    if outcome.status is Status.PAUSED and flow_run.deployment_id is not None:
        # A deployment run stops as Suspended: "Resume" reschedules it on a worker, which runs this
        # flow again from the top, and the status files skip what already succeeded.
        suspend_current_run(str(flow_run.id))
    return outcome_state(outcome, message)
