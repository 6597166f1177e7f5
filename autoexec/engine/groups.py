"""Groups of a runFlow: oneShot (phases concurrently) and grayScale (node batches through all
phases, round by round). Fixed from the original: phases with no nodes still report a status, a
``middle`` runner round runs once instead of hanging, and round waits are bounded."""
from __future__ import annotations

import contextvars
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from autoexec.models.nodes import RUNNER_NODE, Node, NodesFile, NodesHeader, load_nodes
from autoexec.models.params import Group, JobInputError, Phase
from autoexec.models.status import Status
from autoexec.engine.phase import Dispatch, PhaseRunner
from autoexec.job.runlinks import RoundBarrier, RunLinks
from autoexec.job.runtime import JobRuntime, PhasePlan, parallel_count
from autoexec.conf.secrets import node_secrets


@dataclass
class GroupResult:
    group_no: int
    phases: dict[str, Status] = field(default_factory=dict)
    ran_any: bool = False

    @property
    def failed(self) -> bool:
        return any(Status.of(s).failed for s in self.phases.values())


def nodes_file_for(rt: JobRuntime, group_no: int, phase: str | None,
                   exists: Callable[[Path], bool] = Path.exists) -> Path:
    """Per-phase file, else per-group file, else the job's nodes.json. ``exists``: whether the job
    dir has a file (the dry run asks what it would have once a run placed its inputs)."""
    jd = rt.jobdir
    candidates = ([jd.phase_nodes(phase)] if phase else []) + [jd.group_nodes(group_no), jd.nodes]
    for path in candidates:
        if exists(path):
            return path
    return jd.nodes


_nodes_cache: dict[str, tuple[float, NodesFile]] = {}
_NODES_CACHE_MAX = 64  # a deployment worker runs job after job in one process


def read_nodes(path: Path) -> NodesFile:
    """Parsed once per file version: every phase of a group reads the same nodes file."""
    if not path.exists():
        return NodesFile(header=NodesHeader(totalCount=0), nodes=[])
    mtime = path.stat().st_mtime
    cached = _nodes_cache.get(str(path))
    if cached is not None and cached[0] == mtime:
        return cached[1]
    if len(_nodes_cache) >= _NODES_CACHE_MAX:
        _nodes_cache.clear()
    parsed = load_nodes(path)
    _nodes_cache[str(path)] = (mtime, parsed)
    return parsed


def my_nodes(rt: JobRuntime, nodes: Iterable[Node]) -> list[Node]:
    """The nodes this runner runs (its runnerId, within ``--nodes``)."""
    return [n for n in nodes
            if n.runnerId == rt.runner_id and (rt.spec.node_filter is None or n.resourceId in rt.spec.node_filter)]


def plan_phase(rt: JobRuntime, group: Group, phase: Phase, index: int, round_count: int | None,
               nodes_path: Path | None = None, holds: NodesFile | None = None) -> PhasePlan:
    """``holds``: what ``nodes_path`` will hold, when it is not read from there (a dry run)."""
    path = nodes_path or nodes_file_for(rt, group.groupNo, phase.phaseName)
    nodes_file = holds if holds is not None else read_nodes(path)
    rt.masker.add_from(nodes_file, lambda: node_secrets(nodes_file.nodes, rt.decrypt))
    if phase.runs_on_runner:
        local = nodes_file.header.localRunnerId == rt.runner_id
        nodes = [RUNNER_NODE] if local else []
        return PhasePlan(group.groupNo, phase, index, path, nodes_file.header, nodes, True, 1)
    nodes = my_nodes(rt, nodes_file.nodes)
    count = len(rt.spec.node_filter) if rt.spec.node_filter else (nodes_file.header.totalCount or len(nodes))
    rc = phase.roundCount if phase.roundCount is not None else round_count
    return PhasePlan(group.groupNo, phase, index, path, nodes_file.header, nodes, False,
                     parallel_count(count, rc, rt.max_parallel))


def refresh_nodes(rt: JobRuntime, node_from: str, phase: str, group_no: int) -> bool:
    """Production: the console decides a phase's (oneShot) or group's (grayScale) nodes just before
    it runs. A download that fails with no earlier copy, or a nodes file that is malformed
    (downloaded now or left in the job dir), stops the job with one line."""
    what = f"phase {phase}" if node_from == "phase" else f"group {group_no}"
    try:
        rt.services.refresh_nodes(node_from, phase, group_no)
    except Exception as exc:  # noqa: BLE001 - reported, the job stops as failed
        rt.console.line(f"ERROR: Download nodes of {what} failed: {exc}")
        rt.control.mark_failed()
        return False
    try:
        read_nodes(nodes_file_for(rt, group_no, phase if node_from == "phase" else None))
    except JobInputError as exc:
        rt.console.line(f"ERROR: Nodes of {what} refused: {exc}")
        rt.control.mark_failed()
        return False
    return True


def _selected(rt: JobRuntime, phase: Phase) -> bool:
    return rt.spec.phase_filter is None or phase.phaseName in rt.spec.phase_filter


ROUND_RESEND_SECS = 10.0

Spawn = Callable[[Callable[[], None]], threading.Thread]


def spawn_in_context(fn: Callable[[], None]) -> threading.Thread:
    """Phase threads must see the flow run's context (Prefect submits tasks through it)."""
    ctx = contextvars.copy_context()
    thread = threading.Thread(target=ctx.run, args=(fn,), daemon=True)
    thread.start()
    return thread


def run_one_shot(rt: JobRuntime, group: Group, dispatch: Dispatch, round_count: int | None,
                 links: RunLinks) -> GroupResult:
    result = GroupResult(group.groupNo)
    runners: list[PhaseRunner] = []
    threads: list[threading.Thread] = []
    for index, phase in enumerate(group.phases, 1):
        if rt.control.halted:
            break
        if not _selected(rt, phase):
            continue
        if not refresh_nodes(rt, "phase", phase.phaseName, group.groupNo):
            result.phases[phase.phaseName] = Status.FAILED
            break
        plan = plan_phase(rt, group, phase, index, round_count)
        if not plan.nodes:
            why = "is no need to execute in current runner" if plan.on_runner else "has no node for this runner"
            rt.console.line(f"INFO: {'Local phase' if plan.on_runner else 'Phase'}:{phase.phaseName} {why}.")
            continue
        runner = PhaseRunner(rt, plan, dispatch, links)
        runners.append(runner)

        def work(r: PhaseRunner = runner) -> None:
            r.start()
            r.execute(r.plan.nodes)
            result.phases[r.plan.name] = r.finish()

        threads.append(spawn_in_context(work))
    for thread in threads:
        thread.join()
    for runner in runners:
        runner.summary()
    rt.console.line("-" * 62 + "\n")
    result.ran_any = bool(runners)
    return result


def round_sizes(node_count: int, round_count: int | None) -> list[int]:
    """``R <= 0`` means one round per node; sizes differ by at most one, larger first."""
    r = round_count if round_count and round_count > 0 else node_count
    rounds = max(1, min(r, node_count))
    if node_count <= 0:
        return [0]
    base, extra = divmod(node_count, rounds)
    return [base + (1 if i < extra else 0) for i in range(rounds)]


def runner_round(exec_round: str | None, rounds: int) -> int:
    """The single round a runner phase runs in: first (default), last, or middle = the first
    round at or past the midpoint (it runs once; the original hung on it)."""
    if exec_round == "last":
        return rounds
    if exec_round == "middle":
        return max(1, math.ceil(rounds / 2))
    return 1


def run_gray_scale(rt: JobRuntime, group: Group, dispatch: Dispatch, round_count: int | None,
                   links: RunLinks) -> GroupResult:
    result = GroupResult(group.groupNo)
    if not refresh_nodes(rt, "group", "", group.groupNo):
        result.phases[f"group-{group.groupNo}"] = Status.FAILED
        return result
    group_path = nodes_file_for(rt, group.groupNo, None)
    group_file = read_nodes(group_path)
    all_nodes = group_file.nodes
    sizes = round_sizes(len(all_nodes), round_count)
    rounds = len(sizes)
    parallel = max(1, min(max(sizes), rt.max_parallel))
    phases = [(i, p) for i, p in enumerate(group.phases, 1) if _selected(rt, p)]
    runners: dict[str, PhaseRunner] = {}
    for index, phase in phases:
        plan = plan_phase(rt, group, phase, index, round_count, nodes_path=group_path)
        plan.parallel = parallel if not plan.on_runner else 1
        runners[phase.phaseName] = PhaseRunner(rt, plan, dispatch, links)
    offset = 0
    for round_no, size in enumerate(sizes, 1):
        batch = all_nodes[offset:offset + size]
        offset += size
        if rt.spec.round_filter is not None and round_no != rt.spec.round_filter:
            continue
        mine = my_nodes(rt, batch)
        rt.console.line(f"INFO: Group:{group.groupNo} round:{round_no}/{rounds} with {len(mine)} node(s).")
        for _, phase in phases:
            if rt.control.halted:
                break
            runner = runners[phase.phaseName]
            if runner.plan.on_runner:
                if runner.plan.nodes and round_no == runner_round(phase.execRound, rounds):
                    runner.start()
                    runner.execute(runner.plan.nodes)
            elif mine:
                runner.start()
                runner.execute(mine, scope=f"phase {phase.phaseName} round {round_no}/{rounds}")
            if runner.state.counts["fail"] or runner.state.counts["abort"]:
                rt.control.note_failed()  # a failure past the round's threshold already halted the job
            if len(runner.plan.header.jobRunnerIds) > 1 and not rt.control.halted and rt.spec.round_filter is None:
                _cross_runner_barrier(rt, links.barrier, group.groupNo, phase.phaseName, round_no)
        if rt.control.halted:
            break
    for name, runner in runners.items():
        if runner.state.started:
            result.phases[name] = runner.finish()
            runner.summary()
    rt.console.line("-" * 62 + "\n")
    result.ran_any = any(r.state.started for r in runners.values())
    return result


def _cross_runner_barrier(rt: JobRuntime, barrier: RoundBarrier, group_no: int, phase: str, round_no: int) -> None:
    """Other runners work on the same round: tell the console this runner is done and wait for its
    go-ahead (``informRoundContinue`` on the job socket). devmode has no console to answer, so it
    does not wait (the original waited for nothing until timeout); the wait is bounded by ``job.maxExecSecs``."""
    rt.notifier.round_ended(group_no=group_no, phase=phase, round_no=round_no)
    rt.console.line(f"INFO: Inform server group:{group_no} round:{round_no} ended.")
    if rt.dev_mode:
        return
    deadline = time.monotonic() + rt.config.max_exec_secs
    while not rt.control.stopping:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            rt.console.line(f"ERROR: Job last more than max execute seconds:{rt.config.max_exec_secs:.0f}, exit.")
            rt.control.mark_failed()
            return
        if barrier.wait(phase, round_no, min(ROUND_RESEND_SECS, remaining), lambda: rt.control.stopping):
            return
        # as the original: the console may have missed that this runner is done (restart, other
        # runners late); tell it again until the go-ahead comes
        rt.notifier.round_ended(group_no=group_no, phase=phase, round_no=round_no)


def run_group(rt: JobRuntime, group: Group, dispatch: Dispatch, links: RunLinks) -> GroupResult:
    round_count = group.roundCount if group.roundCount is not None else rt.params.roundCount
    # one named phase forces oneShot (the original's rule), except in a one-round part of a
    # coordinated job, which must keep the group's round partition
    one_phase = rt.spec.phase_filter is not None and len(rt.spec.phase_filter) == 1 and rt.spec.round_filter is None
    one_shot = one_phase or not group.gray_scale
    if one_shot:
        return run_one_shot(rt, group, dispatch, round_count, links)
    return run_gray_scale(rt, group, dispatch, round_count, links)
