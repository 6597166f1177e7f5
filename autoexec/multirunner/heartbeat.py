"""A part's sign of life, for the coordinator on another host.

The coordinator must tell a part whose host died (nothing will ever end its run) from one that is
merely slow. A worker's last poll of its queue is no such sign: a worker busy starting a burst of
flow runs does not poll for minutes, while its parts run fine. So every part, from its first line
until its process exits, rewrites a label of its own flow run every few seconds; the coordinator
compares successive values (not clocks: the hosts' clocks may differ) and declares a part gone
only when the label stopped changing and its queue is not polled either.
"""
from __future__ import annotations

import os
import threading
import time
import uuid

LABEL = "autoexec.heartbeat"
HEARTBEAT_SECONDS = 5.0


def start_heartbeat(flow_run_id: str, every: float = HEARTBEAT_SECONDS) -> threading.Thread:
    """A daemon thread: it beats until the process exits (a failed API call just skips a beat)."""
    thread = threading.Thread(target=_beat, args=(uuid.UUID(flow_run_id), every), name="autoexec-heartbeat", daemon=True)
    thread.start()
    return thread


def _beat(run_id: uuid.UUID, every: float) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        count = 0
        while True:
            count += 1
            try:
                client.update_flow_run_labels(run_id, {LABEL: f"{os.getpid()}-{count}"})
            except Exception:  # noqa: BLE001 - API hiccup: the next beat
                pass
            time.sleep(every)
