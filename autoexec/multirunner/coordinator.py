"""The coordinator flow: one trigger runs a job over every runner host it names.

Per step of the job it starts one deployment run per runner with work in it (on that runner's
queue) and waits for all of them: the barrier the console kept in the original. A part that did
not complete stops the job there. Cancel and Pause are passed on to every running part."""
from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.context import get_run_context
from prefect.states import Cancelled, Completed, Failed

from autoexec.models.nodes import NodesFile, parse_nodes_lines
from autoexec.models.params import JobInputError, Params, load_params, parse_params
from autoexec.multirunner.heartbeat import LABEL as HEARTBEAT_LABEL
from autoexec.multirunner.plan import NodeLists, Step, own_nodes_text, part_run_name, plan_steps

FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
PART_DEPLOYMENT = "autoexec-job/job"
QUEUE_PREFIX = "runner-"


@dataclass
class JobInputs:
    params_json: dict[str, Any]
    nodes_text: str
    params: Params
    nodes: NodesFile
    group_nodes: dict[int, str] = field(default_factory=dict)
    phase_nodes: dict[str, str] = field(default_factory=dict)
    lists: NodeLists | None = None

    def for_runner(self, runner: int) -> dict[str, Any]:
        """The part parameters that bring the inputs to ``runner``'s host: a phase's own list cut to
        that runner's nodes; the job's and groups' lists whole (grayScale rounds are cut from the
        whole list on every runner alike)."""
        assert self.lists is not None
        phases = {name: own_nodes_text(text, self.lists.phases[name], runner) for name, text in self.phase_nodes.items()}
        return {"params": self.params_json, "nodes": self.nodes_text,
                "group_nodes": {str(no): text for no, text in self.group_nodes.items()}, "phase_nodes": phases}


def _node_lists(nodes: dict[str, str] | None, what: str) -> dict[str, tuple[str, NodesFile]]:
    out: dict[str, tuple[str, NodesFile]] = {}
    for key, text in (nodes or {}).items():
        if not isinstance(text, str):
            raise JobInputError(f"{what}[{key}]: expected nodes as JSON lines text")
        out[str(key)] = (text, parse_nodes_lines(text.splitlines(), f"{what}[{key}]"))
    return out


def load_inputs(params: dict[str, Any] | None, params_file: str, nodes: str | None, nodes_file: str,
                group_nodes: dict[str, str] | None = None, phase_nodes: dict[str, str] | None = None) -> JobInputs:
    """Read and validate on the coordinator's host; parts get the inputs inline (hosts share no disk).
    ``group_nodes``/``phase_nodes``: the node lists a group (by groupNo) or a phase (by name) has of
    its own, as JSON lines text."""
    if params is not None:
        parsed = parse_params(params, "params (inline)")
        params_json = params
    elif params_file:
        parsed = load_params(Path(params_file))
        params_json = json.loads(Path(params_file).read_text(encoding="utf-8"))
    else:
        raise JobInputError("params: give params (inline) or params_file")
    if nodes is None:
        if not nodes_file:
            raise JobInputError("nodes: give nodes (inline JSON lines) or nodes_file")
        try:
            nodes = Path(nodes_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise JobInputError(f"{nodes_file}: cannot read: {exc.strerror}") from None
    nodes_parsed = parse_nodes_lines(nodes.splitlines(), nodes_file or "nodes (inline)")
    groups = _node_lists(group_nodes, "group_nodes")
    for key in groups:
        if not key.isdigit() or int(key) not in {g.groupNo for g in parsed.runFlow}:
            raise JobInputError(f"group_nodes[{key}]: no group {key} in params runFlow")
    phases = _node_lists(phase_nodes, "phase_nodes")
    for key in phases:
        if key not in {p.phaseName for g in parsed.runFlow for p in g.phases}:
            raise JobInputError(f"phase_nodes[{key}]: no phase {key!r} in params runFlow")
    lists = NodeLists(nodes_parsed, {int(k): v[1] for k, v in groups.items()}, {k: v[1] for k, v in phases.items()})
    return JobInputs(params_json, nodes, parsed, nodes_parsed, {int(k): v[0] for k, v in groups.items()},
                     {k: v[0] for k, v in phases.items()}, lists)


@dataclass
class Part:
    runner: int
    step: Step
    run_id: uuid.UUID
    state_type: str = "SCHEDULED"
    state_name: str = "Scheduled"
    running_since: float | None = None
    beat: str | None = None
    """The part's last heartbeat label (see :mod:`autoexec.multirunner.heartbeat`)."""
    beat_seen: float = 0.0
    """When ``beat`` last changed, on this host's monotonic clock."""

    @property
    def queue(self) -> str:
        return f"{QUEUE_PREFIX}{self.runner}"

    @property
    def done(self) -> bool:
        """Final, or suspended after a pause (its process has exited)."""
        return self.state_type in FINAL or self.state_name == "Suspended"


@dataclass
class Coordination:
    """Reads the coordinator's own run and its parts; turns Cancel/Pause/SIGTERM into actions."""

    client: Any
    run_id: uuid.UUID
    pool: str | None
    stale_seconds: float
    poll_seconds: float
    say: Any
    terminated: threading.Event = field(default_factory=threading.Event)
    request: str | None = None
    """``cancel`` or ``pause`` once asked."""

    def own_request(self) -> str | None:
        if self.request is None:
            if self.terminated.is_set():
                self.request = "cancel"
            else:
                try:
                    state = self.client.read_flow_run(self.run_id).state
                except Exception:  # noqa: BLE001 - API hiccup: next poll
                    return None
                kind = state.type.value if state is not None else ""
                if kind in ("CANCELLING", "CANCELLED"):
                    self.request = "cancel"
                elif kind == "PAUSED":
                    self.request = "pause"
        return self.request

    def refresh(self, parts: list[Part]) -> None:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        try:
            runs = self.client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[p.run_id for p in parts])))
        except Exception:  # noqa: BLE001 - API hiccup: next poll
            return
        by_id = {r.id: r for r in runs}
        for part in parts:
            run = by_id.get(part.run_id)
            if run is None or run.state is None:
                continue
            part.state_type, part.state_name = run.state.type.value, run.state.name or ""
            if part.state_type == "RUNNING" and part.running_since is None:
                part.running_since = time.monotonic()
            beat = (getattr(run, "labels", None) or {}).get(HEARTBEAT_LABEL)
            if beat is not None and beat != part.beat:
                part.beat, part.beat_seen = str(beat), time.monotonic()

    def set_state(self, part: Part, state: Any) -> None:
        try:
            self.client.set_flow_run_state(part.run_id, state, force=True)
        except Exception as exc:  # noqa: BLE001 - reported; the wait below still bounds the stop
            self.say(f"cannot set {part.queue} {part.step.label} to {state.type.value}: {exc}")

    def pass_on(self, parts: list[Part], request: str) -> None:
        """Cancel or pause every part not done yet; one that never started is just cancelled."""
        from prefect.states import Cancelled as CancelledState
        from prefect.states import Cancelling, Paused

        for part in parts:
            if part.done:
                continue
            if part.state_type in ("SCHEDULED", "PENDING"):
                self.set_state(part, CancelledState(message=f"job {request}: part not started"))
            elif request == "cancel":
                self.set_state(part, Cancelling(message="the job was cancelled"))
            elif part.state_type == "RUNNING":
                self.set_state(part, Paused(message="the job was paused"))

    def crash_orphans(self, parts: list[Part]) -> None:
        """A running part that has not beaten its heartbeat for ``stale_seconds`` while no worker
        polled its queue either: its host is gone, and no process is left to end the run, so it is
        marked Crashed here. Either sign alone is not enough: a worker busy starting many runs does
        not poll, and a part whose worker alone died is still running (and if the part's process
        dies under a live worker, the worker itself marks the run Crashed)."""
        from prefect.states import Crashed

        for part in parts:
            if part.state_type != "RUNNING" or part.running_since is None:
                continue
            silent = time.monotonic() - max(part.running_since, part.beat_seen)
            if silent <= self.stale_seconds:
                continue
            idle = self.queue_idle_seconds(part.queue)
            if idle is not None and idle > self.stale_seconds:
                self.say(f"{part.queue} {part.step.label}: no worker polled {part.queue} for {idle:.0f} s, marking the part Crashed")
                self.set_state(part, Crashed(message=f"worker of {part.queue} gone (queue not polled for {idle:.0f} s)"))
                part.state_type = "CRASHED"

    def queue_idle_seconds(self, queue: str) -> float | None:
        try:
            wq = self.client.read_work_queue_by_name(queue, work_pool_name=self.pool)
        except Exception:  # noqa: BLE001 - unknown queue or API hiccup: nothing to conclude
            return None
        last_polled: datetime | None = wq.last_polled
        if last_polled is None:
            return None
        return (datetime.now(timezone.utc) - last_polled).total_seconds()


def _part_parameters(job_id: str, step: Step, runner: int, inputs: JobInputs | None, common: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = dict(common, job_id=job_id, runner_id=runner, phase_groups=str(step.group_no),
                                  no_fire_next=True)
    if step.round_no is not None:
        params.update(round_no=step.round_no, phases=step.phase or "")
    if inputs is not None:  # the first part of this runner in this run brings the inputs to its host
        params.update(inputs.for_runner(runner))
    else:
        params["first_fire"] = False
    return params


def _start_part(job_id: str, step: Step, runner: int, parameters: dict[str, Any], key: str,
                deployment: str) -> Part:
    from prefect.deployments import run_deployment

    run: Any = run_deployment(name=deployment, parameters=parameters, timeout=0, as_subflow=True,
                         work_queue_name=f"{QUEUE_PREFIX}{runner}", idempotency_key=key,
                         flow_run_name=part_run_name(job_id, runner, step.label))
    return Part(runner, step, run.id)  # a FlowRun: called from a sync flow, run_deployment runs to completion


def _install_sigterm(event: threading.Event) -> None:
    """A worker answers Cancel on the coordinator with SIGTERM: the parts must hear of it first."""
    try:
        signal.signal(signal.SIGTERM, lambda *_: event.set())
    except ValueError:  # not the main thread (tests calling the flow in a thread)
        pass


@flow(name="autoexec-coordinator", flow_run_name="job-{job_id}", validate_parameters=False, retries=0)
def coordinated_job_flow(job_id: str | int, exec_user: str = "anonymous", params_file: str = "", nodes_file: str = "",
                         params: dict[str, Any] | None = None, nodes: str | None = None, force: bool = False,
                         first_fire: bool = False, dev_mode: bool = True, pass_through_env: dict[str, Any] | None = None,
                         phase_groups: str | int = "", part_deployment: str = PART_DEPLOYMENT,
                         work_pool: str | None = None, stale_seconds: float = 60.0, poll_seconds: float = 0.5,
                         group_nodes: dict[str, str] | None = None, phase_nodes: dict[str, str] | None = None, lookahead: int = 1) -> Any:
    """One job over several runner hosts. Inputs as the ``autoexec-job/job`` deployment; each part
    runs on the work queue ``runner-<runnerId>``. ``stale_seconds``: how long a running part's queue
    may go unpolled before the part is declared Crashed. ``group_nodes`` (groupNo -> JSON lines) and
    ``phase_nodes`` (phase name -> JSON lines): node lists of a group or phase of its own, as the
    console's per-group/per-phase nodes files; each runner gets only its own nodes of a phase's list.
    ``lookahead``: how many steps past the running one already have their parts started, each
    waiting for the step before (at least 1)."""
    from autoexec.load.loader import parse_group_numbers
    from prefect.client.orchestration import get_client

    job_id = str(job_id)
    logger = get_run_logger()
    try:
        inputs = load_inputs(params, params_file, nodes, nodes_file, group_nodes, phase_nodes)
        assert inputs.lists is not None
        steps = plan_steps(inputs.params, inputs.lists, parse_group_numbers(str(phase_groups)))
    except JobInputError as exc:
        logger.error("%s", exc)
        return Failed(message=str(exc))
    ctx = get_run_context()
    flow_run = getattr(ctx, "flow_run", None)
    assert flow_run is not None
    if flow_run.run_count > 1:
        first_fire = False  # a resume continues this generation's console logs
    common = {"exec_user": exec_user, "force": force, "first_fire": first_fire, "dev_mode": dev_mode,
              "pass_through_env": pass_through_env or {}}
    terminated = threading.Event()
    _install_sigterm(terminated)
    fed: set[int] = set()
    history: list[dict[str, Any]] = []
    with get_client(sync_client=True) as client:
        co = Coordination(client, flow_run.id, work_pool, stale_seconds, poll_seconds, logger.info, terminated)

        def start(index: int, after: list[Part]) -> list[Part]:
            step, parts = steps[index], []
            for runner in step.runners:
                parameters = _part_parameters(job_id, step, runner, None if runner in fed else inputs, common)
                if after:
                    parameters["after_runs"] = [str(p.run_id) for p in after]
                key = f"{flow_run.id}/{flow_run.run_count}/{index}/{runner}"
                parts.append(_start_part(job_id, step, runner, parameters, key, part_deployment))
                fed.add(runner)
            return parts

        # The parts of the next `lookahead` steps start before their turn and wait for the step
        # before inside their own runs: their process start-up overlaps the steps before them
        # instead of adding to every barrier (it takes longer than a short step).
        started: list[list[Part]] = []
        ahead = max(1, int(lookahead))
        for index, step in enumerate(steps):
            while len(started) < min(len(steps), index + 1 + ahead) and not co.own_request():
                started.append(start(len(started), started[-1] if started else []))
            if len(started) <= index:
                break
            parts = started[index]
            pending = [p for later in started[index + 1:] for p in later]
            logger.info("step %s: parts on %s", step.label, ", ".join(p.queue for p in parts))
            _wait(co, parts, pending)
            history.append({"step": step.label, "parts": {p.queue: p.state_name for p in parts}})
            suspended = [p for p in parts if p.state_name == "Suspended"]
            bad = [p for p in parts if p.state_type != "COMPLETED"]
            if co.request or suspended or bad:
                if suspended and not co.request:
                    co.request = "pause"  # a part was paused on its host: pause the job
                _stop_waiting_parts(co, pending)
                if bad and not co.request:
                    what = ", ".join(f"{p.queue} {p.step.label} {p.state_name}" for p in bad)
                    logger.error("job %s stops after step %s: %s", job_id, step.label, what)
                    return Failed(message=f"job failed: {what}"[:500], data=json.dumps(history))
                break
    if co.request == "cancel":
        return Cancelled(message="job cancelled", data=json.dumps(history))
    if co.request == "pause":
        if flow_run.deployment_id is not None:
            from autoexec.flows.prefect_control import suspend_current_run

            suspend_current_run(str(flow_run.id))
        return Completed(message="job paused", data=history)
    logger.info("job %s succeed over runners %s", job_id, sorted(fed))
    return Completed(message="job succeed", data=history)


def _wait(co: Coordination, parts: list[Part], waiting: list[Part]) -> None:
    """The barrier: every part of the step done. A Cancel/Pause of the job is passed on within one
    poll (the next step's parts, still waiting, are cancelled), and the wait then ends once the
    parts have stopped."""
    passed_on = False
    last_orphan_check = 0.0
    while True:
        co.refresh(parts + waiting)
        request = co.own_request()
        if request and not passed_on:
            co.pass_on(parts, request)
            co.pass_on(waiting, "cancel")
            passed_on = True
        if all(p.done for p in parts):
            return
        if not passed_on and any(p.state_name == "Suspended" for p in parts):
            co.request = "pause"  # a part paused on its host: the others pause too
            continue
        if time.monotonic() - last_orphan_check > min(5.0, co.stale_seconds / 2):
            co.crash_orphans(parts + waiting)
            last_orphan_check = time.monotonic()
        time.sleep(co.poll_seconds)


def _stop_waiting_parts(co: Coordination, waiting: list[Part], timeout: float = 120.0) -> None:
    """The job stops at this barrier: the next step's parts must not run. Cancelled here (a part
    that never started) or by themselves (their wait sees the failed step); waited for so that the
    job's run tree is final when the coordinator ends."""
    if not waiting:
        return
    co.refresh(waiting)
    co.pass_on(waiting, "cancel")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        co.refresh(waiting)
        if all(p.done for p in waiting):
            return
        time.sleep(co.poll_seconds)
