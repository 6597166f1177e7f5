"""Which runner runs what, step by step: the barriers of a job spread over several runners.

Prefect-free, so it is cheap to test and the coordinator only has to walk the list. The steps are
the points where the original's runners waited for each other through the console: the end of a
group (``fireNextGroup``) and, in a grayScale group, the end of each phase of each round
(``informRoundEnded``, then "round continue"). Every runner computes the same round partition
from the group's nodes in file order, so the coordinator computes it once here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from autoexec.engine.groups import round_sizes, runner_round
from autoexec.models.nodes import NodesFile
from autoexec.models.params import Group, Params


@dataclass(frozen=True)
class Step:
    group_no: int
    round_no: int | None
    """``None``: a whole oneShot group."""
    phase: str | None
    """A grayScale step runs one phase of one round; ``None`` for a oneShot group."""
    runners: tuple[int, ...]

    @property
    def label(self) -> str:
        return step_label(self.group_no, self.round_no, self.phase)


def step_label(group_no: int | str, round_no: int | None, phase: str | None) -> str:
    """``g<group>`` or ``g<group>-r<round>-<phase>``: part flow runs are named after it."""
    return f"g{group_no}" if round_no is None else f"g{group_no}-r{round_no}-{phase}"


def part_run_name(job_id: str, runner_id: int, label: str) -> str:
    return f"job-{job_id}/runner-{runner_id}/{label}"


@dataclass
class NodeLists:
    """The node lists of a job: the job's own, and those a group or a phase has of its own. The
    runners look them up as in the job dir: a oneShot phase uses its phase's list, else its group's,
    else the job's; a grayScale group uses its group's, else the job's (rounds span all phases)."""

    job: NodesFile
    groups: dict[int, NodesFile] = field(default_factory=dict)
    phases: dict[str, NodesFile] = field(default_factory=dict)

    def of_group(self, group_no: int) -> NodesFile:
        return self.groups.get(group_no, self.job)

    def of_phase(self, group_no: int, phase: str) -> NodesFile:
        return self.phases.get(phase) or self.of_group(group_no)


def plan_steps(params: Params, nodes: NodesFile | NodeLists, groups: set[int] | None = None) -> list[Step]:
    """The steps of a job in order; a step lists only the runners that have work in it."""
    lists = nodes if isinstance(nodes, NodeLists) else NodeLists(nodes)
    steps: list[Step] = []
    for group in params.runFlow:
        if groups is not None and group.groupNo not in groups:
            continue
        round_count = group.roundCount if group.roundCount is not None else params.roundCount
        if group.gray_scale:
            group_nodes = lists.of_group(group.groupNo)
            steps.extend(_gray_scale_steps(group, group_nodes, group_nodes.header.localRunnerId, round_count))
            continue
        runners: set[int] = set()
        for phase in group.phases:
            phase_nodes = lists.of_phase(group.groupNo, phase.phaseName)
            if phase.runs_on_runner:
                runners.add(phase_nodes.header.localRunnerId)
            else:
                runners.update(n.runnerId for n in phase_nodes.nodes)
        if runners:
            steps.append(Step(group.groupNo, None, None, tuple(sorted(runners))))
    return steps


def own_nodes_text(text: str, parsed: NodesFile, runner: int) -> str:
    """A nodes file's text cut down to the header and ``runner``'s nodes, for a list only oneShot
    phases read (a phase's own list): a runner runs just its own nodes of it, and the header keeps
    the whole list's ``totalCount``, which sets the phase's parallelism as before."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return text
    header = json.loads(lines[0])
    if not header.get("totalCount"):
        header["totalCount"] = len(parsed.nodes)
    kept = [line for line, node in zip(lines[1:], parsed.nodes, strict=True) if node.runnerId == runner]
    return "\n".join([json.dumps(header, ensure_ascii=False), *kept]) + "\n"


def _gray_scale_steps(group: Group, nodes: NodesFile, local: int, round_count: int | None) -> list[Step]:
    steps: list[Step] = []
    sizes = round_sizes(len(nodes.nodes), round_count)
    offset = 0
    for round_no, size in enumerate(sizes, 1):
        batch = nodes.nodes[offset:offset + size]
        offset += size
        for phase in group.phases:
            if phase.runs_on_runner:
                runners = {local} if round_no == runner_round(phase.execRound, len(sizes)) else set()
            else:
                runners = {n.runnerId for n in batch}
            if runners:
                steps.append(Step(group.groupNo, round_no, phase.phaseName, tuple(sorted(runners))))
    return steps


def runners_of(steps: list[Step]) -> list[int]:
    return sorted({r for step in steps for r in step.runners})
