"""Operator control from Prefect: Cancel and Pause set on the flow run reach the job.

Prefect only cancels runs it launched itself (a worker SIGTERMs the process group), and a Paused
state set from outside does not stop running code at all. So a deployment run watches its own
flow run: one cheap read per second on a daemon thread, mapped onto the same
:class:`~autoexec.job.control.JobControl` that signals and ``--abort``/``--pause`` use. CLI-started
runs (no worker) are watched by the machine's recorder, which sends the job the same signals.
"""
from __future__ import annotations

import threading
import uuid
from typing import Any, Callable

from autoexec.job.control import JobControl

POLL_SECONDS = 1.0
CANCEL_STATES = frozenset({"CANCELLING", "CANCELLED"})


class RunWatcher:
    """Polls one flow run's state and turns CANCELLING/CANCELLED into abort, PAUSED into pause."""

    def __init__(self, control: JobControl, flow_run_id: str, say: Callable[[str], None] = lambda _: None,
                 interval: float = POLL_SECONDS, client: Any = None) -> None:
        self.control = control
        self.flow_run_id = uuid.UUID(str(flow_run_id))
        self.say = say
        self.interval = interval
        self.paused_externally = False
        self.cancelled_externally = False
        # The client is made on the caller's thread: Prefect settings (the API URL) live in a
        # context that threads do not inherit.
        self._client = client if client is not None else _sync_client()
        self._own_client = client is None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="autoexec-prefect-watch", daemon=True)

    def start(self) -> "RunWatcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self._own_client:
            try:
                self._client.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - closing a client must never fail a job
                pass

    def check_now(self) -> str | None:
        """One synchronous look, e.g. before a group starts, so that a stop requested just
        before the boundary does not start a whole new group (and its subflow run)."""
        try:
            with self._lock:
                state = self._client.read_flow_run(self.flow_run_id).state
        except Exception:  # noqa: BLE001 - API hiccup: the next poll tries again
            return None
        state_type = state.type.value if state is not None else None
        self._act(state_type)
        return state_type

    def _act(self, state_type: str | None) -> None:
        if state_type in CANCEL_STATES and not self.control.aborting:
            self.cancelled_externally = True
            self.say(f"INFO: Prefect flow run is {state_type}, try to kill job...")
            self.control.abort()
        elif state_type == "PAUSED" and not self.control.stopping:
            self.paused_externally = True
            self.say("INFO: Prefect flow run was paused, try to pause job...")
            self.control.pause()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.check_now()
            if self.control.aborting:
                return


def _sync_client() -> Any:
    from prefect.client.orchestration import get_client

    client = get_client(sync_client=True)
    client.__enter__()
    return client


def suspend_current_run(flow_run_id: str) -> None:
    """End this deployment run as Suspended so that Resume re-runs it under a worker.

    ``suspend_flow_run`` refuses a run that is not RUNNING, and an operator's Pause already
    moved it to PAUSED (not resumable by a worker: no reschedule): put it back to RUNNING
    first. A fresh pause key each time: the default key is a per-process counter that would
    collide with the previous attempt's after a resume ("This suspend has already fired").
    Raises Prefect's ``Pause``, which ends the process cleanly (exit 0).
    """
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import suspend_flow_run
    from prefect.states import Running

    run_id = uuid.UUID(str(flow_run_id))
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
        if state is not None and state.type.value == "PAUSED":
            client.set_flow_run_state(run_id, Running(message="job paused; suspending"), force=True)
    suspend_flow_run(key=f"autoexec-pause-{uuid.uuid4().hex}")
