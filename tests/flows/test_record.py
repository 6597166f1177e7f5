"""The Prefect record as an event consumer: :class:`autoexec.flows.record.RunRecord` fed typed
events (:func:`autoexec.events.stream.make`) against an in-memory stand-in for the Prefect REST API that
keeps runs the way the server does (idempotent creates, states). The same mirror against a real
Prefect server is tested in tests/integration/test_recorder.py."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from autoexec.events.stream import Event, Kind, counts_from, make
from autoexec.flows.api import ApiRefused
from autoexec.flows.record import Catalog, RunRecord, artifact_key
from autoexec.jobdir.logs import last_error_line

CATALOG = Catalog(job_flow_id="flow-job", group_flow_id="flow-group", cli_deployment_id="dep-cli")


class FakePrefect:
    """The REST calls the mirror makes, recorded; flow and task runs kept by their idempotency key
    (flow runs) or (flow run, task key, dynamic key) (task runs), as the server does."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.runs: dict[str, dict[str, Any]] = {}
        self._keys: dict[Any, str] = {}
        self.refuse: set[str] = set()

    def call(self, method: str, path: str, body: Any = None, on_retry: Any = None) -> Any:
        self.calls.append((method, path, body))
        if path in self.refuse:
            raise ApiRefused(f"{method} {path}: 409")
        if method == "POST" and path in ("flow_runs/", "task_runs/"):
            key = body.get("idempotency_key") if path == "flow_runs/" else \
                (body["flow_run_id"], body["task_key"], body["dynamic_key"])
            if key is not None and key in self._keys:
                return dict(self.runs[self._keys[key]])
            run_id = f"{path[:-2]}-{len(self.runs) + 1}"
            self.runs[run_id] = {"id": run_id, "state_type": body["state"]["type"], "body": body}
            if key is not None:
                self._keys[key] = run_id
            return dict(self.runs[run_id])
        if method == "POST" and path.endswith("/set_state"):
            run_id = path.split("/")[1]
            self.runs[run_id]["state_type"] = body["state"]["type"]
            self.runs[run_id]["state"] = body["state"]
            return {"status": "ACCEPT"}
        if method == "POST" and path == "artifacts/":
            return {"id": f"artifact-{sum(1 for c in self.calls if c[1] == 'artifacts/')}"}
        return {}

    def state(self, run_id: str) -> dict[str, Any]:
        state: dict[str, Any] = self.runs[run_id]["state"]
        return state

    def named(self, name: str) -> str:
        [run_id] = [r for r, run in self.runs.items() if run["body"]["name"] == name]
        return run_id

    def logs(self) -> list[dict[str, Any]]:
        return [entry for method, path, body in self.calls if path == "logs/" for entry in body]

    def paths(self, method: str = "POST") -> list[str]:
        return [path for m, path, _ in self.calls if m == method]


def ev(kind: Kind, **fields: Any) -> Event:
    return make(kind, **fields)


def _counts(**raw: int) -> Any:
    return counts_from(raw)


def _job(mirror: RunRecord, node_status: str = "succeed", log: str | None = None, **end: Any) -> None:
    """One group, one phase, one node, in the order a job emits them."""
    mirror.apply(ev("job_start", job_id="77", exec_user="alice", pid=4242, start_time=None, width=1))
    mirror.apply(ev("group_start", group=0))
    mirror.apply(ev("node_start", key=1, group=0, phase="deploy", node="10.0.0.1-22-101", label="web1 10.0.0.1:22 #101",
                    **({"log": log} if log else {})))
    mirror.apply(ev("node_end", key=1, status=node_status, exit_code=end.get("exit_code"), message=end.get("message", ""),
                    duration=1.0, warn_count=0))
    mirror.apply(ev("phase_counts", group=0, phase="deploy", status=node_status,
                    counts=_counts(**{{"succeed": "suc", "failed": "fail"}.get(node_status, "suc"): 1})))
    mirror.apply(ev("group_end", group=0, status=node_status, phases={"deploy": node_status}))
    mirror.apply(ev("job_end", status=node_status, exit_code=0 if node_status == "succeed" else 1,
                    message=f"job {node_status}", groups={"0": {"deploy": node_status}}))


def test_a_cli_job_is_recorded_as_job_run_group_subflow_and_node_task() -> None:
    api = FakePrefect()
    mirror = RunRecord(api, CATALOG)
    _job(mirror)
    job_run = api.named("job-77")
    job = api.runs[job_run]["body"]
    assert job["flow_id"] == "flow-job" and job["deployment_id"] == "dep-cli" and "cli" in job["tags"]
    assert job["parameters"] == {"job_id": "77", "exec_user": "alice"}
    group_task, group_run = api.named("group-0"), api.named("77/group-0")
    assert api.runs[group_task]["body"]["flow_run_id"] == job_run
    assert api.runs[group_run]["body"]["parent_task_run_id"] == group_task
    node = api.named("deploy/web1 10.0.0.1:22 #101")
    assert api.runs[node]["body"]["flow_run_id"] == group_run and api.runs[node]["body"]["tags"] == ["deploy"]
    for run_id in (node, group_task, group_run, job_run):
        assert api.state(run_id)["type"] == "COMPLETED", run_id
    assert mirror.ended and mirror.flow_run_id == job_run
    assert json.loads(json.dumps(mirror.state)) == mirror.state, "the state is plain JSON, for the checkpoint"


def test_a_failed_node_records_why_and_the_summary_lists_it(tmp_path: Path) -> None:
    log = tmp_path / "node.txt"
    log.write_text("INFO: start\nERROR: disk /data is full\nINFO: cleanup\n")
    api = FakePrefect()
    mirror = RunRecord(api, CATALOG)
    _job(mirror, "failed", str(log), exit_code=3, message="deploy.sh exited with status 3")
    state = api.state(api.named("deploy/web1 10.0.0.1:22 #101"))
    assert state["type"] == "FAILED"
    assert state["message"] == "deploy/web1 10.0.0.1:22 #101 failed: deploy.sh exited with status 3 (exit 3)"
    assert api.state(api.named("77/group-0"))["type"] == "FAILED"
    assert api.state(api.named("job-77"))["type"] == "FAILED"
    [artifact] = [body for m, path, body in api.calls if path == "artifacts/"]
    assert artifact["key"] == artifact_key("77") and artifact["flow_run_id"] == api.named("job-77")
    assert "## Job 77: failed" in artifact["data"]
    assert "| deploy | deploy/web1 10.0.0.1:22 #101 | 3 | ERROR: disk /data is full |" in artifact["data"]


def test_each_outcome_has_its_prefect_state() -> None:
    seen = {}
    for status in ("succeed", "ignored", "failed", "aborted", "paused"):
        api = FakePrefect()
        _job(RunRecord(api, CATALOG), status)
        state = api.state(api.named("deploy/web1 10.0.0.1:22 #101"))
        seen[status] = (state["type"], state["name"])
    assert seen == {"succeed": ("COMPLETED", "Completed"), "ignored": ("COMPLETED", "Ignored"),
                    "failed": ("FAILED", "Failed"), "aborted": ("CANCELLED", "Cancelled"), "paused": ("PAUSED", "Paused")}


def test_inside_a_deployment_run_the_flow_engine_owns_the_job_run_state() -> None:
    api = FakePrefect()
    mirror = RunRecord(api, CATALOG, flow_run_id="deployment-run-1")
    _job(mirror)
    assert not any(body and body.get("name") == "job-77" for _, path, body in api.calls if path == "flow_runs/")
    assert "flow_runs/deployment-run-1/set_state" not in api.paths()
    assert api.runs[api.named("group-0")]["body"]["flow_run_id"] == "deployment-run-1"
    assert mirror.ended


def test_node_log_lines_reach_the_task_run_whole_and_masked(tmp_path: Path) -> None:
    log = tmp_path / "node.txt"
    log.write_text("")
    api = FakePrefect()
    mirror = RunRecord(api, CATALOG, mask=lambda text: text.replace("hunter2", "******"))
    mirror.apply(ev("job_start", job_id="78", exec_user="bob", pid=1, start_time=None, width=1))
    mirror.apply(ev("group_start", group=0))
    mirror.apply(ev("node_start", key=1, group=0, phase="p", node="n1", label="n1", log=str(log)))
    with log.open("a") as fh:
        fh.write("first line with hunter2\nhalf a li")
    mirror.tick(now=1000.0)
    node_task = api.named("p/n1")
    sent = [entry for entry in api.logs() if entry["task_run_id"] == node_task]
    assert [entry["message"] for entry in sent] == ["first line with ******"]
    assert sent[0]["flow_run_id"] == api.named("78/group-0") and sent[0]["level"] == logging.INFO
    with log.open("a") as fh:
        fh.write("ne\n")
    mirror.tick(now=1000.5)  # within the tick interval: nothing new is sent
    assert len([e for e in api.logs() if e["task_run_id"] == node_task]) == 1
    mirror.tick(now=1002.0)
    assert [e["message"] for e in api.logs() if e["task_run_id"] == node_task] == ["first line with ******", "half a line"]


def test_a_refused_call_is_reported_and_the_record_goes_on() -> None:
    api = FakePrefect()
    said: list[str] = []
    mirror = RunRecord(api, CATALOG, say=said.append)
    api.refuse.add("task_runs/task_run-4/set_state")  # the node's task run (job, group task, group run, node)
    _job(mirror)
    assert said and "record of node_end refused" in said[0]
    assert api.state(api.named("job-77"))["type"] == "COMPLETED" and mirror.ended


def test_a_lost_job_process_closes_what_is_open_as_crashed() -> None:
    api = FakePrefect()
    mirror = RunRecord(api, CATALOG)
    mirror.apply(ev("job_start", job_id="79", exec_user="bob", pid=1, start_time=None, width=1))
    mirror.apply(ev("group_start", group=0))
    mirror.apply(ev("node_start", key=1, group=0, phase="p", node="n1", label="n1"))
    mirror.crash("job process 1 is gone")
    assert api.state(api.named("p/n1"))["type"] == "CRASHED"
    group = api.state(api.named("79/group-0"))
    assert group["type"] == "FAILED" and group["message"] == "group 0: job process 1 is gone"
    job = api.state(api.named("job-79"))
    assert job["type"] == "CRASHED" and job["message"] == "job process 1 is gone"
    assert mirror.ended and mirror.state["open"] == {}


def test_a_replay_from_a_checkpoint_finds_its_runs_and_resumes_a_paused_one() -> None:
    api = FakePrefect()
    first = RunRecord(api, CATALOG)
    first.apply(ev("job_start", job_id="80", exec_user="bob", pid=1, start_time=None, width=1))
    first.apply(ev("group_start", group=0))
    group_run = api.named("80/group-0")
    api.runs[group_run]["state_type"] = "PAUSED"  # e.g. paused from the UI, then the job resumed
    checkpoint = json.loads(json.dumps(first.state))
    checkpoint["groups"] = {}  # the checkpoint was taken before group_start was applied

    again = RunRecord(api, CATALOG, state=checkpoint)
    again.apply(ev("group_start", group=0))
    assert again.state["groups"]["0"]["run"] == group_run, "the same run, not a second one"
    assert len([r for r in api.runs.values() if r["body"]["name"] == "80/group-0"]) == 1
    assert api.runs[group_run]["state_type"] == "RUNNING"


def test_a_large_phase_is_recorded_as_batches_with_their_counts() -> None:
    api = FakePrefect()
    mirror = RunRecord(api, CATALOG)
    mirror.apply(ev("job_start", job_id="81", exec_user="bob", pid=1, start_time=None, width=1))
    mirror.apply(ev("group_start", group=0))
    mirror.apply(ev("batch_start", key=5, group=0, phase="p", label="nodes 1-500", nodes=500))
    mirror.apply(ev("batch_end", key=5, status="failed", counts=_counts(suc=498, fail=2)))
    state = api.state(api.named("p/nodes 1-500"))
    assert state["type"] == "FAILED" and state["message"] == "p/nodes 1-500: succeed 498, failed 2"


def test_unknown_event_kinds_are_ignored_and_late_ends_do_nothing() -> None:
    api = FakePrefect()
    mirror = RunRecord(api, CATALOG)
    mirror.apply({"v": 1, "event": "from_a_newer_version", "time": 0.0})
    mirror.apply(ev("node_end", key=99, status="succeed"))
    assert api.calls == []


def test_last_error_line_is_the_last_line_that_is_not_the_runners_framing(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    log.write_text("10:00:00 ------START--[x_1] local execution start...\n10:00:01 ERROR: first\n"
                   "10:00:01 disk full\n10:00:02 ERROR: Execute operation x on runner failed.\n"
                   "10:00:02 ------END--[x_1] local execution complete -- duration: 1.00 second.\n\n")
    assert last_error_line(str(log)) == "disk full", "the tool's own last line, without its time stamp"
    assert last_error_line(str(log), skip="disk full") == "ERROR: first", "a reason shown already is left out"
    log.write_text("10:00:00 INFO: only framing\n\n")
    assert last_error_line(str(log)) == ""
    assert last_error_line(str(tmp_path / "missing")) == "" and last_error_line(None) == ""
