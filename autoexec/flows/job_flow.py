"""A job's runFlow compiled into Prefect runs: job flow -> one subflow per group -> one task run
per (phase, node), named ``<phase>/<node>`` (the UI shows job -> group -> phase/node).

Parameters stay small and secret-free (job id, names); the live objects a task needs are found in a
process-local registry, because a task run always executes in the process of its flow run here.
Node outcomes are read back from that registry too, so Prefect states are only for the UI and
hooks, never a second source of truth (resume relies on the status files).
"""
from __future__ import annotations

import itertools
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.states import Cancelled, Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from autoexec.engine import JobOutcome, run_job
from autoexec.executor import NodeResult
from autoexec.flows.prefect_control import RunWatcher, suspend_current_run
from autoexec.flows.run_logs import forward_node_log
from autoexec.groups import GroupResult, run_group
from autoexec.loader import JobRequest
from autoexec.models.nodes import Node
from autoexec.models.params import Group
from autoexec.phase import Dispatch, PhaseRunner, execute_node, thread_submit
from autoexec.recording import node_tasks_max
from autoexec.runtime import JobRuntime, PhasePlan

_runtimes: dict[str, JobRuntime] = {}
_units: dict[tuple[str, str, str], tuple[PhasePlan, Node]] = {}
_results: dict[tuple[str, str, str], NodeResult] = {}
_lock = threading.Lock()


def register_runtime(rt: JobRuntime) -> None:
    _runtimes[rt.job_id] = rt


# retries=0 on purpose: a node re-run belongs to the job (status files decide what re-runs), so
# PREFECT_TASKS/FLOWS_DEFAULT_RETRIES in a deployment's env may only retry the whole job flow.
@task(name="node", task_run_name="{phase}/{node}", cache_policy=NO_CACHE, persist_result=False, retries=0)
def node_task(job_id: str, phase: str, node: str) -> Any:
    rt = _runtimes[job_id]
    plan, node_obj = _units[(job_id, phase, node)]
    result = execute_node(rt, plan, node_obj)
    with _lock:
        _results[(job_id, phase, node)] = result
    try:
        forward_node_log(get_run_logger(), f"{phase}/{node}", rt.jobdir.node_log(phase, node), result.status,
                         mask=rt.masker)
    except Exception:  # noqa: BLE001 - the UI copy of a log must never fail a node
        pass
    if result.status in ("failed", "aborted"):
        return Failed(message=f"{phase}/{node} {result.status}: {result.message}"[:500], data=result.summary())
    return result.summary()


class _NodeFuture:
    """Adapts a Prefect future to what the phase runner expects, returning our NodeResult."""

    def __init__(self, key: tuple[str, str, str], future: Any) -> None:
        self.key = key
        self.future = future

    def add_done_callback(self, fn: Any) -> None:
        self.future.add_done_callback(fn)

    def result(self, timeout: float | None = None) -> NodeResult:
        self.future.wait(timeout)
        with _lock:
            result = _results.pop(self.key, None)
            _units.pop(self.key, None)
        if result is None:
            state = self.future.state
            return NodeResult(node=self.key[2], status="failed",
                              message=f"task ended {state.type.value}: {state.message or ''}".strip())
        return result


def _submitter(job_id: str) -> Any:
    def submit(plan: PhasePlan, node: Node) -> _NodeFuture:
        key = (job_id, plan.name, node.triple)
        with _lock:
            _units[key] = (plan, node)
        return _NodeFuture(key, node_task.submit(job_id, plan.name, node.triple))
    return submit


@task(name="node-batch", task_run_name="{phase}/{label}", cache_policy=NO_CACHE, persist_result=False,
      retries=0)
def batch_task(job_id: str, phase: str, label: str, key: int) -> Any:
    """A phase too large for one task run per node: its nodes run on a plain thread pool under
    this one task run (Prefect costs ~5 ms of CPU per task run; see README, Performance)."""
    runner, nodes = _batches.pop(key)
    rt = _runtimes[job_id]
    with ThreadPoolExecutor(max(1, runner.plan.parallel)) as pool:
        runner.run_nodes(nodes, thread_submit(pool, rt))
    counts = runner.state.snapshot()
    summary = {"nodes": len(nodes), "succeed": counts.suc, "failed": counts.fail, "ignored": counts.ignore,
               "skipped": counts.skip, "paused": counts.pause}
    if counts.fail:
        return Failed(message=f"{phase}: {counts.fail} of {len(nodes)} node(s) failed", data=summary)
    return summary


_batches: dict[int, tuple[PhaseRunner, list[Node]]] = {}
_batch_ids = itertools.count()


def _dispatcher(job_id: str) -> Dispatch:
    submit = _submitter(job_id)

    def dispatch(runner: PhaseRunner, nodes: list[Node]) -> None:
        if len(nodes) <= node_tasks_max():
            runner.run_nodes(nodes, submit)
            return
        key = next(_batch_ids)
        _batches[key] = (runner, nodes)
        label = f"{nodes[0].triple}..+{len(nodes) - 1}"
        batch_task.submit(job_id, runner.plan.name, label, key).wait()
        _batches.pop(key, None)

    return dispatch


@flow(name="autoexec-group", flow_run_name="{job_id}/group-{group_no}", validate_parameters=False, retries=0)
def group_flow(job_id: str, group_no: int) -> dict[str, str]:
    rt = _runtimes[job_id]
    # Prefect re-arms its own SIGTERM bridge for every (sub)flow scope; ours must win inside too,
    # or SIGTERM would crash the run while tools keep running.
    rt.control.install_signal_handlers()
    group = next(g for g in rt.params.runFlow if g.groupNo == group_no)
    result = run_group(rt, group, _dispatcher(job_id))
    _group_results[(job_id, group_no)] = result
    if result.failed:
        return Failed(message=f"group {group_no}: " + ", ".join(f"{k}={v}" for k, v in result.phases.items()),
                      data=result.phases)  # type: ignore[return-value]
    return result.phases


_group_results: dict[tuple[str, int], GroupResult] = {}


def _prefect_group_runner(rt: JobRuntime, group: Group) -> GroupResult:
    watcher = _watchers.get(rt.job_id)
    if watcher is not None:
        watcher.check_now()
        if rt.control.stopping:
            return GroupResult(group.groupNo, {})
    sub = group_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=rt.max_parallel))  # type: ignore[arg-type]  # Prefect's TaskRunner type is invariant
    sub(rt.job_id, group.groupNo, return_state=True)
    return _group_results.pop((rt.job_id, group.groupNo), GroupResult(group.groupNo, {"?": "failed"}))


_watchers: dict[str, RunWatcher] = {}


def _current_flow_run() -> Any:
    try:
        return getattr(get_run_context(), "flow_run", None)
    except Exception:  # noqa: BLE001 - outside a flow run (tests)
        return None


def run_runtime(rt: JobRuntime) -> JobOutcome:
    """The body shared by the CLI and deployment entry points, inside a running flow."""
    register_runtime(rt)
    flow_run = _current_flow_run()
    flow_run_id = str(flow_run.id) if flow_run is not None else None
    if rt.job_lock is not None and flow_run_id is not None:
        rt.job_lock.record(flow_run_id)  # --abort/--pause and a refused second run name the run
    rt.control.install_signal_handlers()
    watcher = _start_watcher(rt, flow_run_id)
    try:
        return run_job(rt, _prefect_group_runner)
    finally:
        if watcher is not None:
            _watchers.pop(rt.job_id, None)
            watcher.stop()
        _runtimes.pop(rt.job_id, None)


def _start_watcher(rt: JobRuntime, flow_run_id: str | None) -> RunWatcher | None:
    """Cancel/Pause from the Prefect UI or API, for CLI and deployment runs alike."""
    if flow_run_id is None or os.environ.get("AUTOEXEC_PREFECT_WATCH", "1") == "0":
        return None
    try:
        watcher = RunWatcher(rt.control, flow_run_id, say=rt.console.line,
                             interval=float(os.environ.get("AUTOEXEC_PREFECT_WATCH_SECONDS", "1")))
    except Exception as exc:  # noqa: BLE001 - no API client: signals and --abort still work
        rt.console.line(f"WARN: Cannot watch the Prefect flow run for cancel/pause: {exc}")
        return None
    _watchers[rt.job_id] = watcher
    return watcher.start()


def outcome_state(outcome: JobOutcome) -> Any:
    """Failed/Cancelled carry the summary as text: under a worker the engine turns a failed state's
    data into an exception, and a dict there fails with a TypeError instead of FailedRun."""
    summary = outcome.summary()
    if outcome.status == "failed":
        return Failed(message=f"job failed: {outcome.message}" if outcome.message else "job failed",
                      data=json.dumps(summary))
    if outcome.status == "aborted":
        return Cancelled(message="job aborted", data=json.dumps(summary))
    return Completed(message=f"job {outcome.status}", data=summary)


def _job_run_name() -> str:
    """``job-<id>``; a part of a coordinated job adds its runner and step."""
    from prefect.runtime import flow_run

    from autoexec.multirunner.plan import part_run_name, step_label

    p = flow_run.parameters
    if not p.get("runner_id"):
        return f"job-{p.get('job_id')}"
    return part_run_name(str(p.get("job_id")), int(p["runner_id"]), step_label(p.get("phase_groups", ""), p.get("round_no"), p.get("phases")))


@flow(name="autoexec-job", flow_run_name=_job_run_name, validate_parameters=False)
def job_flow(job_id: str | int, exec_user: str = "anonymous", params_file: str = "", nodes_file: str = "",
             params: dict | None = None, nodes: str | None = None, force: bool = False,
             first_fire: bool = False, dev_mode: bool = True, no_fire_next: bool = False,
             pass_through_env: dict | None = None, phase_groups: str | int = "", phases: str = "",
             node_ids: str | int = "", runner_id: int | None = None, round_no: int | None = None,
             after_runs: list[str] | None = None) -> Any:
    """Entry point for deployments and API-triggered runs: same semantics as the CLI. Ids may come
    as numbers (``prefect deployment run -p job_id=9001`` sends an integer). ``runner_id`` and
    ``round_no`` narrow the run to one runner's nodes (and one grayScale round) of a job a
    coordinator spreads over several runner hosts; such a part waits for the runs in
    ``after_runs`` (the step before) to complete before it starts."""
    job_id, phase_groups, node_ids = str(job_id), str(phase_groups), str(node_ids)
    rt = _runtimes.get(job_id)
    if rt is not None:  # the CLI's inline mode: runtime built, lock held by the CLI
        return _finish(rt, run_runtime(rt), built_here=False)
    flow_run = _current_flow_run()
    if after_runs:  # before the lock: the step before may be running this job here right now
        from autoexec.multirunner.gate import wait_for_previous_step

        blocked = wait_for_previous_step(list(after_runs), str(flow_run.id) if flow_run is not None else None)
        if blocked:
            return Cancelled(message=f"part not run: {blocked}"[:500])
    from autoexec.config import autoexec_home
    from autoexec.control import JobControl
    from autoexec.jobdir import JobDir, UnsafeName
    from autoexec.joblock import JobBusy, JobLock
    from autoexec.loader import parse_id_list, parse_name_list
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
        lock = JobLock.acquire(root, job_id, str(flow_run.id) if flow_run is not None else None)
    except JobBusy as exc:
        _log(str(exc))
        return Cancelled(message=str(exc))
    try:
        lock.honour_request(control)
        if flow_run is not None and flow_run.run_count > 1:
            first_fire = False  # a resume or retry continues this generation's console log
        req = JobRequest(job_id=job_id, exec_user=exec_user, params_file=params_file, nodes_file=nodes_file,
                         params_json=params, nodes_jsonl=nodes, force=force, first_fire=first_fire,
                         dev_mode=dev_mode, no_fire_next=no_fire_next,
                         pass_through_env={**(pass_through_env or {}), **({"runnerId": int(runner_id)} if runner_id else {})},
                         round_no=int(round_no) if round_no else None,
                         phase_groups=parse_id_list(phase_groups, "phasegroups"),
                         phases=parse_name_list(phases),
                         nodes=parse_id_list(node_ids, "nodes"))
        from autoexec.production import build_job_runtime

        rt = build_job_runtime(req, control=control)
        rt.job_lock = lock
        return _finish(rt, run_runtime(rt), built_here=True)
    finally:
        lock.release()


def _log(message: str) -> None:
    try:
        get_run_logger().info(message)
    except Exception:  # noqa: BLE001 - outside a run context (tests)
        pass


def _finish(rt: JobRuntime, outcome: JobOutcome, built_here: bool) -> Any:
    _log(f"job {rt.job_id} {outcome.status}")
    _outcomes[rt.job_id] = outcome
    if built_here:  # the CLI releases its own runtime after the flow returns
        from autoexec.loader import release_runtime

        release_runtime(rt)
    flow_run = _current_flow_run()
    if outcome.status == "paused" and flow_run is not None and flow_run.deployment_id is not None:
        # A deployment run stops as Suspended: "Resume" reschedules it on a worker, which runs this
        # flow again from the top, and the status files skip what already succeeded.
        suspend_current_run(str(flow_run.id))
    return outcome_state(outcome)


_outcomes: dict[str, JobOutcome] = {}


def run_via_prefect(rt: JobRuntime) -> JobOutcome:
    """CLI path: the runtime is already built (inputs validated before Prefect starts)."""
    register_runtime(rt)
    job_flow.with_options(flow_run_name=f"job-{rt.job_id}")(job_id=rt.job_id, exec_user=rt.exec_user,
                                                            return_state=True)
    return _outcomes.pop(rt.job_id, JobOutcome(status="failed"))
