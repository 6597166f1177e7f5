"""The barrier as a part sees it: wait until every part of the step before has completed.

A coordinator starts the parts of step k+1 while step k still runs, so that their process
start-up (Python, Prefect, the flow) overlaps the work of step k instead of adding to every
barrier. Such a part waits here before it touches its job dir: it goes on once all parts of the
previous step are Completed, and stops without running anything when one of them ended otherwise
(the job stops at this barrier, as ``hasFailNode`` stops it) or when its own run is cancelled or
paused meanwhile.
"""
from __future__ import annotations

import signal
import threading
import time
import uuid
from typing import Any

POLL_SECONDS = 0.3
FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})


def wait_for_previous_step(previous: list[str], own_run_id: str | None, poll: float = POLL_SECONDS) -> str | None:
    """``None`` when the part may run; otherwise why it must not (a one-line message)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    ids = [uuid.UUID(str(run_id)) for run_id in previous]
    terminated = threading.Event()
    try:
        signal.signal(signal.SIGTERM, lambda *_: terminated.set())
    except ValueError:  # not the main thread
        pass
    own = uuid.UUID(own_run_id) if own_run_id is not None else None
    with get_client(sync_client=True) as client:
        while True:
            if terminated.is_set():
                return "cancelled before it started"
            try:  # one call a poll: a job's waiting parts all poll the same server
                runs: list[Any] = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids + ([own] if own else []))))
            except Exception:  # noqa: BLE001 - API hiccup: next poll
                runs = []
            mine = [r for r in runs if r.id == own]
            why = _own_stop(mine[0].state) if mine else None
            if why:
                return why
            runs = [r for r in runs if r.id != own]
            if len(runs) == len(ids):
                states = [(r.name, r.state.type.value if r.state else "", r.state.name if r.state else "") for r in runs]
                done = [s for s in states if s[1] in FINAL or s[2] == "Suspended"]
                if len(done) == len(states):
                    bad = [f"{name} {state_name}" for name, kind, state_name in states if kind != "COMPLETED"]
                    return f"the step before did not complete: {', '.join(bad)}" if bad else None
            time.sleep(poll)


def _own_stop(state: Any) -> str | None:
    kind = state.type.value if state is not None else ""
    if kind in ("CANCELLING", "CANCELLED"):
        return "cancelled before it started"
    if kind == "PAUSED":
        return "the job was paused before this part started"
    return None
