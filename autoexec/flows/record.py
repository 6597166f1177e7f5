"""The Prefect record of a job, defined once: a consumer of the engine's events.

One :class:`RunRecord` per job invocation turns its event stream into Prefect runs (job flow run,
group subflow runs, node task runs) through the REST API; every create is idempotent so a replay
never shows runs twice. Run names, states and logs: docs/design.md."""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from autoexec.events.stream import Event
from autoexec.flows.api import ApiRefused, PrefectApi, iso
from autoexec.jobdir.logs import last_error_line
from autoexec.models.status import Status

JOB_FLOW = "autoexec-job"
GROUP_FLOW = "autoexec-group"
CLI_DEPLOYMENT = "autoexec-cli"
LOG_TICK_SECONDS = 1.0
LOG_BYTES_PER_TICK = 16 * 1024
LOG_BATCH = 200
ARTIFACT_MIN_SECONDS = 2.0

STATE_OF: dict[str, tuple[str, str]] = {Status.SUCCEED: ("COMPLETED", "Completed"), Status.COMPLETED: ("COMPLETED", "Completed"),
            Status.IGNORED: ("COMPLETED", "Ignored"), Status.FAILED: ("FAILED", "Failed"),
            Status.ABORTED: ("CANCELLED", "Cancelled"), Status.PAUSED: ("PAUSED", "Paused"),
            Status.CRASHED: ("CRASHED", "Crashed"), Status.RUNNING: ("RUNNING", "Running")}


@dataclass
class Catalog:
    """Ids every record refers to, looked up once per process."""

    job_flow_id: str
    group_flow_id: str
    cli_deployment_id: str | None

    @classmethod
    def ensure(cls, api: PrefectApi, with_cli_deployment: bool = True) -> "Catalog":
        job_flow = api.call("POST", "flows/", {"name": JOB_FLOW})["id"]
        group_flow = api.call("POST", "flows/", {"name": GROUP_FLOW})["id"]
        deployment = None
        if with_cli_deployment:
            deployment = cli_deployment(api, job_flow)
        return cls(job_flow, group_flow, deployment)


def cli_deployment(api: PrefectApi, flow_id: str) -> str | None:
    """A deployment that CLI runs belong to. Prefect's UIs offer Cancel and Pause only for runs
    with a deployment; this one has no work pool and is paused, so nothing ever runs from it:
    the recorder watches its runs and signals the job process."""
    body = {"name": CLI_DEPLOYMENT, "flow_id": flow_id, "paused": True, "enforce_parameter_schema": False,
            "tags": ["autoexec"], "description": "Runs of autoexec jobs started from the command line. "
            "Cancel and Pause reach the job process through the autoexec recorder; do not run it from here."}
    try:
        return str(api.call("POST", "deployments/", body)["id"])
    except ApiRefused:
        return None


def state_body(status: str, message: str = "", **details: Any) -> dict[str, Any]:
    """A state set with ``force``: the record states what happened, Prefect's rules for running
    code do not apply to it."""
    kind, name = STATE_OF.get(status, ("FAILED", "Failed"))
    state: dict[str, Any] = {"type": kind, "name": name, "message": message[:500]}
    if details:
        state["state_details"] = details
    return {"state": state, "force": True}


def _plain_counts(raw: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in (raw or {}).items()}


def _phase_status(counts: dict[str, int]) -> Status:
    ran = Status.SUCCEED if counts.get(Status.SUCCEED) or counts.get(Status.IGNORED) else \
        Status.SKIPPED if counts.get(Status.SKIPPED) else Status.PENDING
    return Status.worst((s for s, n in counts.items() if n), default=ran)


def _one_line(text: str) -> str:
    return " ".join(str(text or "").split())[:300]


def artifact_key(job_id: str) -> str:
    return "autoexec-job-" + (re.sub(r"[^a-z0-9-]+", "-", str(job_id).lower()).strip("-") or "x")


class RunRecord:
    """``flow_run_id`` given: record into that (running) flow run, whose own state its flow
    engine owns; otherwise create the job's flow run and own its state (CLI runs)."""

    def __init__(self, api: PrefectApi, catalog: Catalog, flow_run_id: str | None = None,
                 state: dict[str, Any] | None = None, say: Callable[[str], None] = lambda _t: None,
                 mask: Callable[[str], str] | None = None) -> None:
        self.api = api
        # Node logs and messages are masked when written; the job's masker, where this process
        # has it (a deployment run), masks again what other writers may have appended.
        self.mask = mask or (lambda text: text)
        self.catalog = catalog
        self.say = say
        self.state: dict[str, Any] = state or {"own": flow_run_id is None, "flow_run_id": flow_run_id,
                                               "groups": {}, "open": {}, "phases": {}, "failed": [],
                                               "artifact": None, "ended": False, "job": {}, "console": None}
        self._last_tick = 0.0
        self._last_artifact = time.monotonic()  # a short job gets its summary once, at its end

    # --- the stream -------------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return bool(self.state["ended"])

    @property
    def flow_run_id(self) -> str | None:
        run = self.state["flow_run_id"]
        return None if run is None else str(run)

    def apply(self, event: Event) -> None:
        handler = getattr(self, "_on_" + str(event.get("event")), None)
        if handler is None:
            return  # a kind this version does not record
        try:
            handler(event)
        except ApiRefused as exc:  # one refused call must not stop the record of the rest
            self.say(f"record of {event.get('event')} refused: {exc}")

    def _on_job_start(self, ev: Event) -> None:
        st = self.state
        st["job"] = {k: ev.get(k) for k in ("job_id", "exec_user", "pid", "start_time", "console", "job_dir")}
        st["job"]["started"] = ev.get("time")
        console = ev.get("console")
        if console:
            st["console"] = {"path": console, "off": int(ev.get("console_offset") or 0)}
        job_id = str(ev.get("job_id"))
        if st["own"]:
            body = {"flow_id": self.catalog.job_flow_id, "name": f"job-{job_id}",
                    "parameters": {"job_id": job_id, "exec_user": ev.get("exec_user")},
                    "tags": ["autoexec", "cli"], "idempotency_key": f"autoexec-cli-{job_id}-{ev.get('pid')}-{ev.get('time')}",
                    "state": {"type": "RUNNING", "name": "Running", "message": f"pid {ev.get('pid')}"}}
            if self.catalog.cli_deployment_id:
                body["deployment_id"] = self.catalog.cli_deployment_id
            st["flow_run_id"] = str(self.api.call("POST", "flow_runs/", body)["id"])
        self._log(None, logging.INFO, f"job {job_id} started by {ev.get('exec_user')} (pid {ev.get('pid')})",
                  ev.get("time"))

    def _on_group_start(self, ev: Event) -> None:
        group = int(ev.get("group", 0))
        st = self.state
        parent = self._running("task_runs", self.api.call("POST", "task_runs/", {
            "flow_run_id": st["flow_run_id"], "name": f"group-{group}", "task_key": "autoexec-group",
            "dynamic_key": f"group-{group}", "state": {"type": "RUNNING", "name": "Running"}}))
        run = self._running("flow_runs", self.api.call("POST", "flow_runs/", {
            "flow_id": self.catalog.group_flow_id, "name": f"{st['job'].get('job_id')}/group-{group}",
            "parent_task_run_id": parent, "idempotency_key": f"{st['flow_run_id']}/group-{group}",
            "parameters": {"job_id": st["job"].get("job_id"), "group_no": group}, "tags": ["autoexec"],
            "state": {"type": "RUNNING", "name": "Running"}}))
        st["groups"][str(group)] = {"task": parent, "run": run, "started": ev.get("time")}
        self._log(None, logging.INFO, f"group {group} started", ev.get("time"))

    def _running(self, kind: str, run: dict[str, Any]) -> str:
        """A create that found an earlier run (a resumed deployment run, a replayed spool) returns it
        as it was, e.g. Paused: running once more."""
        if run.get("state_type") != "RUNNING":
            self.api.call("POST", f"{kind}/{run['id']}/set_state", state_body(Status.RUNNING))
        return str(run["id"])

    def _group_run(self, group: Any) -> str | None:
        entry = self.state["groups"].get(str(group))
        return str(entry["run"]) if entry else self.flow_run_id

    def _open_task(self, ev: Event, name: str, task_key: str, dynamic_key: str, log: str | None) -> None:
        run = self._group_run(ev.get("group"))
        task = self._running("task_runs", self.api.call("POST", "task_runs/", {
            "flow_run_id": run, "name": name, "task_key": task_key, "dynamic_key": dynamic_key,
            "tags": [str(ev.get("phase"))], "state": {"type": "RUNNING", "name": "Running"}}))
        entry: dict[str, Any] = {"task": task, "run": run, "name": name, "phase": ev.get("phase"),
                                 "group": ev.get("group"), "node": ev.get("node"), "started": ev.get("time")}
        if log:
            # a node's log is a new file per execution: one older than the node is the last run's
            try:
                stat = os.stat(log)
                fresh = stat.st_ctime >= float(ev.get("time") or 0) - 0.01
                entry.update(log=log, ino=stat.st_ino, off=0 if fresh else stat.st_size)
            except OSError:
                entry.update(log=log, ino=None, off=0)
        self.state["open"][str(ev.get("key"))] = entry
        self.state["phases"].setdefault(f"{ev.get('group')}/{ev.get('phase')}", {"started": ev.get("time")})

    def _on_node_start(self, ev: Event) -> None:
        label = ev.get("label") or ev.get("node")
        self._open_task(ev, f"{ev.get('phase')}/{label}", f"autoexec-node-{ev.get('phase')}", str(ev.get("node")),
                        ev.get("log"))

    def _on_batch_start(self, ev: Event) -> None:
        self._open_task(ev, f"{ev.get('phase')}/{ev.get('label')}", f"autoexec-batch-{ev.get('phase')}",
                        f"batch-{ev.get('key')}", None)

    def _on_node_end(self, ev: Event) -> None:
        entry = self.state["open"].pop(str(ev.get("key")), None)
        if entry is None:
            return
        status = Status.of(ev.get("status"), Status.FAILED)
        self._stream(entry, final=True)
        message = f"{entry['name']} {status}"
        if status.failed:
            detail = _one_line(ev.get("message") or "")
            exit_code = ev.get("exit_code")
            message += (f": {detail}" if detail else "") + (f" (exit {exit_code})" if exit_code is not None else "")
            if status is Status.FAILED:
                self.state["failed"].append({"phase": entry["phase"], "group": entry["group"], "node": entry["name"],
                                             "exit": exit_code, "line": last_error_line(entry.get("log"))[:300] or detail})
        self.api.call("POST", f"task_runs/{entry['task']}/set_state", state_body(status, self.mask(message)))

    def _on_batch_end(self, ev: Event) -> None:
        entry = self.state["open"].pop(str(ev.get("key")), None)
        if entry is None:
            return
        counts = _plain_counts(ev.get("counts"))
        text = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        self.api.call("POST", f"task_runs/{entry['task']}/set_state",
                      state_body(str(ev.get("status")), f"{entry['name']}: {text or 'no node'}"))

    def _on_phase_counts(self, ev: Event) -> None:
        key = f"{ev.get('group')}/{ev.get('phase')}"
        phase = self.state["phases"].setdefault(key, {"started": ev.get("time")})
        counts = _plain_counts(ev.get("counts"))
        phase.update(counts=counts, status=_phase_status(counts), ended=ev.get("time"))
        self._artifact(force=False)

    def _on_group_end(self, ev: Event) -> None:
        group = str(ev.get("group"))
        entry = self.state["groups"].get(group)
        self._close_open(lambda e: str(e.get("group")) == group, Status.CRASHED if ev.get("crashed") else Status.ABORTED,
                         "the job ended before this node did")
        if entry is None or not entry.get("open", True):
            return
        entry["open"] = False
        status = str(ev.get("status") or Status.FAILED)
        phases = ev.get("phases") or {}
        for name, phase_status in phases.items():  # the phase runner's own verdict, once known
            if f"{group}/{name}" in self.state["phases"]:
                self.state["phases"][f"{group}/{name}"]["status"] = phase_status
        message = f"group {group} {status}" + (": " + ", ".join(f"{k}={v}" for k, v in phases.items())
                                               if phases else "")
        if ev.get("crashed"):
            status, message = Status.FAILED, f"group {group}: {ev.get('message') or 'job process lost'}"
        self.api.call("POST", f"flow_runs/{entry['run']}/set_state", state_body(status, message))
        self.api.call("POST", f"task_runs/{entry['task']}/set_state", state_body(status, message))
        self._log(None, logging.INFO, message, ev.get("time"))
        self._artifact(force=False)

    def _on_job_end(self, ev: Event) -> None:
        st = self.state
        self._close_open(lambda e: True, Status.CRASHED if ev.get("crashed") else Status.ABORTED, "the job ended before it")
        self._stream_console()
        status = str(ev.get("status"))
        message = str(ev.get("message") or f"job {status}")
        st["job"].update(ended=ev.get("time"), status=status, message=message)
        self._log(None, logging.ERROR if status in (Status.FAILED, Status.CRASHED) else logging.INFO,
                  f"job {st['job'].get('job_id')} {status}: {message}" if message != f"job {status}" else message,
                  ev.get("time"))
        self._artifact(force=True)
        self._report_link()
        self.flush_logs()
        if st["own"]:
            self.api.call("POST", f"flow_runs/{st['flow_run_id']}/set_state", state_body(status, message))
        st["ended"] = True

    def _close_open(self, which: Callable[[dict[str, Any]], bool], status: str, why: str) -> None:
        for key, entry in list(self.state["open"].items()):
            if which(entry):
                self.state["open"].pop(key, None)
                self._stream(entry, final=True)
                self.api.call("POST", f"task_runs/{entry['task']}/set_state",
                              state_body(status, f"{entry['name']}: {why}"))

    def crash(self, why: str) -> None:
        """The job process died without its last events: close what is open, as crashed."""
        for group, entry in list(self.state["groups"].items()):
            if not entry.get("open", True):
                continue
            self.apply({"v": 1, "event": "group_end", "group": int(group), "status": Status.FAILED,
                        "crashed": True, "message": why, "time": time.time()})
        self.apply({"v": 1, "event": "job_end", "status": Status.CRASHED, "message": why, "crashed": True,
                    "time": time.time()})

    # --- logs -------------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        """New node log lines into their task runs, the console log into the job run: at most
        once per ``LOG_TICK_SECONDS``, at most ``LOG_BYTES_PER_TICK`` per node."""
        now = time.monotonic() if now is None else now
        if now - self._last_tick < LOG_TICK_SECONDS:
            return
        self._last_tick = now
        for entry in list(self.state["open"].values()):
            self._stream(entry, final=False)
        self._stream_console()
        self.flush_logs()

    def _read_new(self, entry: dict[str, Any], limit: int) -> str:
        path = entry.get("log") or entry.get("path")
        if not isinstance(path, str):
            return ""
        try:
            stat = os.stat(path)
        except OSError:
            return ""
        if entry.get("ino") is not None and stat.st_ino != entry.get("ino") or stat.st_size < entry.get("off", 0):
            entry["off"] = 0  # a new file for this run
        entry["ino"] = stat.st_ino
        start = int(entry.get("off", 0))
        if stat.st_size <= start:
            return ""
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read(min(stat.st_size - start, limit))
        cut = data.rfind(b"\n")
        if cut < 0 and len(data) < limit:
            return ""  # a line still being written
        data = data[:cut + 1] if cut >= 0 else data
        entry["off"] = start + len(data)
        skipped = stat.st_size - entry["off"]
        text = data.decode("utf-8", "replace").rstrip("\n")
        if skipped > limit * 4:  # far behind: jump to the end rather than lag further
            entry["off"] = stat.st_size
            text += f"\n... {skipped} bytes of log skipped (see the node log file)"
        return text

    def _stream(self, entry: dict[str, Any], final: bool) -> None:
        if not entry.get("log"):
            return
        text = self._read_new(entry, LOG_BYTES_PER_TICK * (4 if final else 1))
        if text:
            self._log(entry["task"], logging.INFO, text, None, run=entry["run"])

    def _stream_console(self) -> None:
        console = self.state.get("console")
        if console and self.state["flow_run_id"]:
            text = self._read_new(console, LOG_BYTES_PER_TICK)
            if text:
                self._log(None, logging.INFO, text, None)

    def _log(self, task_run_id: str | None, level: int, message: str, ts: float | None, run: str | None = None) -> None:
        """Queued (in the checkpointed state) and sent in one call per tick: one call per line
        would cost the server more than the runs themselves."""
        flow_run = run or self.state["flow_run_id"]
        if not flow_run:
            return
        pending = self.state.setdefault("logs", [])
        pending.append({"name": "autoexec", "level": level, "message": self.mask(message),
                        "timestamp": iso(ts or time.time()),
                        "flow_run_id": flow_run, "task_run_id": task_run_id})
        if len(pending) >= LOG_BATCH:
            self.flush_logs()

    def flush_logs(self) -> None:
        pending = self.state.get("logs")
        if pending:
            self.api.call("POST", "logs/", pending)
            self.state["logs"] = []

    # --- summary artifact -------------------------------------------------------------------
    def summary_markdown(self) -> str:
        st = self.state
        job = st["job"]
        status = job.get("status") or Status.RUNNING
        started, ended = job.get("started"), job.get("ended")
        lines = [f"## Job {job.get('job_id')}: {status}", ""]
        if job.get("message") and job.get("message") != f"job {status}":
            lines += [str(job["message"]), ""]
        if started:
            lines += [f"Started {iso(float(started))[:19]}Z" + (f", took {float(ended) - float(started):.1f} s"
                                                                 if ended else ""), ""]
        lines += ["| group/phase | status | succeed | failed | aborted | ignored | skipped | paused | duration |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for key, phase in st["phases"].items():
            c = phase.get("counts") or {}
            took = (float(phase.get("ended") or 0) - float(phase.get("started") or 0))
            lines.append(f"| {key} | {phase.get('status')} | {c.get('succeed', 0)} | {c.get('failed', 0)} | "
                         f"{c.get('aborted', 0)} | {c.get('ignored', 0)} | {c.get('skipped', 0)} | "
                         f"{c.get('paused', 0)} | {took:.1f} s |")
        if st["failed"]:
            lines += ["", "### Failed nodes", "", "| phase | node | exit | last error line |", "|---|---|---|---|"]
            for f in st["failed"][-50:]:
                line = str(f.get("line") or "").replace("|", "\\|")
                lines.append(f"| {f.get('phase')} | {f.get('node')} | {f.get('exit')} | {line} |")
        return "\n".join(lines) + "\n"

    def _report_link(self) -> None:
        """The job's HTML report (what ``autoexec report`` writes), made when the job ends and linked
        from its run: the page itself stays in the job dir, where its node-log links resolve."""
        job = self.state["job"]
        if not job.get("job_dir") or not self.state["flow_run_id"]:
            return
        try:
            from pathlib import Path

            from autoexec.jobdir.layout import JobDir
            from autoexec.jobdir.report import write_report

            page = write_report(JobDir(Path(str(job["job_dir"]))), str(job.get("job_id")))
        except Exception as exc:  # noqa: BLE001 - a report that cannot be written never fails the record
            self._log(None, logging.WARNING, f"job report not written: {_one_line(str(exc))}", None)
            return
        body = {"key": artifact_key(str(job.get("job_id"))) + "-report", "type": "link",
                "data": page.resolve().as_uri(), "flow_run_id": self.state["flow_run_id"],
                "description": "autoexec job report (HTML page in the job dir on the runner host)"}
        self.api.call("POST", "artifacts/", body)

    def _artifact(self, force: bool) -> None:
        now = time.monotonic()
        if not self.state["flow_run_id"] or (not force and now - self._last_artifact < ARTIFACT_MIN_SECONDS):
            return
        self._last_artifact = now
        data = self.summary_markdown()
        if self.state["artifact"]:
            self.api.call("PATCH", f"artifacts/{self.state['artifact']}", {"data": data})
            return
        body = {"key": artifact_key(str(self.state["job"].get("job_id"))), "type": "markdown", "data": data,
                "flow_run_id": self.state["flow_run_id"], "description": "autoexec job summary"}
        self.state["artifact"] = str(self.api.call("POST", "artifacts/", body)["id"])

