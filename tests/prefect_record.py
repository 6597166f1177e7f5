"""Reading a job's Prefect record back from the real server, as the UI does (REST)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import requests

from tests.waiting import wait_until

FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED", "PAUSED"}
API_POLL = 0.2
"""Seconds between reads of the Prefect API while waiting: a loaded SQLite server answers slowly."""


def api_url(home: Path) -> str:
    return str(json.loads((home / "prefect" / "server.json").read_text())["url"])


def call(method: str, url: str, body: Any = None) -> requests.Response:
    """The embedded SQLite server may answer 503 when busy: a reader retries, as the UI does."""
    deadline = time.monotonic() + 60
    while True:
        try:
            resp = requests.request(method, url, json=body, timeout=10)
        except (requests.ConnectionError, requests.Timeout):  # a loaded server, not a refusal
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
            continue
        if resp.status_code < 500 or time.monotonic() > deadline:
            return resp
        time.sleep(0.3)


def flow_runs(home: Path, name_like: str) -> list[dict[str, Any]]:
    body = {"flow_runs": {"name": {"like_": name_like}}, "limit": 100, "sort": "START_TIME_ASC"}
    return list(call("POST", f"{api_url(home)}/flow_runs/filter", body).json())


def flow_run(home: Path, run_id: str) -> dict[str, Any]:
    return dict(call("GET", f"{api_url(home)}/flow_runs/{run_id}").json())


def task_runs(home: Path, flow_run_id: str) -> list[dict[str, Any]]:
    body = {"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 200}
    return list(call("POST", f"{api_url(home)}/task_runs/filter", body).json())


def logs(home: Path, flow_run_id: str) -> list[dict[str, Any]]:
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200, "sort": "TIMESTAMP_ASC"}
    return list(call("POST", f"{api_url(home)}/logs/filter", body).json())


def final_run(home: Path, name: str, timeout: float = 180) -> dict[str, Any]:
    """The one flow run called ``name``, once it reached a final state."""
    def final() -> dict[str, Any] | None:
        runs = [r for r in flow_runs(home, name) if r["name"] == name]
        return runs[-1] if runs and runs[-1]["state_type"] in FINAL else None
    return dict(wait_until(final, timeout, f"{name} final", interval=API_POLL))


def job_record(home: Path, job: str, timeout: float = 180) -> dict[str, Any]:
    """The whole record of the last run of ``job``: job run, its group runs and their task runs."""
    run = final_run(home, f"job-{job}", timeout)
    groups = {r["name"]: r for r in flow_runs(home, f"{job}/group-%")
              if r["parent_task_run_id"] in {t["id"] for t in task_runs(home, run["id"])}}
    return {"run": run, "groups": groups,
            "tasks": {name: {t["name"]: t for t in task_runs(home, g["id"])} for name, g in groups.items()}}
