"""The coordinator's steps (the cross-runner barriers) and the one-runner, one-round narrowing of
a part, through the real engine."""
from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from autoexec.models.nodes import parse_nodes_lines
from autoexec.models.params import JobInputError, parse_params
from autoexec.multirunner.coordinator import load_inputs
from autoexec.multirunner.plan import NodeLists, Step, own_nodes_text, plan_steps
from tests.fixtures_core import JobFiles, script_op


def _nodes(runners: list[int], local: int = 1) -> str:
    header = {"jobRunnerIds": sorted(set(runners)), "localRunnerId": local, "totalCount": len(runners)}
    lines = [json.dumps(header)] + [json.dumps({"resourceId": 100 + i, "runnerId": r, "host": f"10.3.0.{i}", "port": 22})
                                    for i, r in enumerate(runners, 1)]
    return "\n".join(lines) + "\n"


def _params(marks: Path | None = None) -> dict[str, Any]:
    mark = f'echo "$NODE_HOST $RUNNER_ID" >> {marks}\n' if marks else "true\n"
    return {"runFlow": [
        {"groupNo": 1, "phases": [
            {"phaseName": "pre", "phaseType": "runner", "operations": [script_op("pre_1", "true\n")]},
            {"phaseName": "scan", "phaseType": "runner_target", "operations": [script_op("scan_1", mark, "runner_target")]}]},
        {"groupNo": 2, "execStrategy": "grayScale", "roundCount": 2, "phases": [
            {"phaseName": "build", "phaseType": "runner", "execRound": "last", "operations": [script_op("b_1", "true\n")]},
            {"phaseName": "deploy", "phaseType": "runner_target", "operations": [script_op("d_1", mark, "runner_target")]}]},
        {"groupNo": 3, "phases": [
            {"phaseName": "post", "phaseType": "runner", "operations": [script_op("post_1", "true\n")]}]},
    ]}


def test_steps_are_groups_and_grayscale_round_phases_with_only_the_runners_that_have_work() -> None:
    params = parse_params(_params(), "p")
    nodes = parse_nodes_lines(_nodes([2, 3, 3, 2, 2], local=1).splitlines(), "n")
    assert plan_steps(params, nodes) == [
        Step(1, None, None, (1, 2, 3)),  # runner phase on localRunnerId 1, nodes on 2 and 3
        Step(2, 1, "deploy", (2, 3)),  # round 1 = the first 3 nodes in file order
        Step(2, 2, "build", (1,)),  # execRound last
        Step(2, 2, "deploy", (2,)),
        Step(3, None, None, (1,)),  # runner phases only: the other runners have nothing to do
    ]
    assert [s.label for s in plan_steps(params, nodes, groups={2})] == ["g2-r1-deploy", "g2-r2-build", "g2-r2-deploy"]


def test_a_part_runs_one_runners_nodes_of_one_round_without_waiting_for_a_console(jobs: JobFiles, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    rt, outcome = jobs.run("9301", _params(marks), _nodes([2, 3, 3, 2, 2]), pass_through_env={"runnerId": 2},
                           phase_groups={2}, phases={"deploy"}, round_no=2, no_fire_next=True)
    assert outcome.status == "succeed"
    assert sorted(marks.read_text().split("\n")[:-1]) == ["10.3.0.4 2", "10.3.0.5 2"]  # round 2's nodes of runner 2 only
    console = rt.jobdir.console_log.read_text()
    assert "round:2/2 with 2 node(s)" in console and "round:1/" not in console
    calls = [name for name, _ in rt.notifier.calls]  # type: ignore[attr-defined]
    assert "round_ended" not in calls and "fire_next_group" not in calls  # the coordinator is the barrier
    assert "Inform server" not in console


def test_a_phase_or_group_with_its_own_node_list_runs_on_the_runners_of_that_list() -> None:
    params = parse_params(_params(), "p")
    job = parse_nodes_lines(_nodes([2, 3, 3, 2, 2], local=1).splitlines(), "n")
    scan = parse_nodes_lines(_nodes([4, 4], local=1).splitlines(), "scan")
    group2 = parse_nodes_lines(_nodes([3, 5], local=5).splitlines(), "g2")
    post = parse_nodes_lines(_nodes([2], local=6).splitlines(), "post")
    assert plan_steps(params, NodeLists(job, {2: group2}, {"scan": scan, "post": post})) == [
        Step(1, None, None, (1, 4)),  # "pre" on the job list's localRunnerId, "scan" on its own list's runner
        Step(2, 1, "deploy", (3,)),  # grayScale: rounds cut from the group's own list
        Step(2, 2, "build", (5,)),  # the runner phase on that list's localRunnerId
        Step(2, 2, "deploy", (5,)),
        Step(3, None, None, (6,)),  # a runner phase with its own list: that list's localRunnerId
    ]


def test_each_runner_gets_only_its_own_nodes_of_a_phase_list_with_the_whole_lists_count() -> None:
    text = _nodes([2, 3, 3, 2, 2]).replace('"totalCount": 5', '"totalCount": 0')
    lists = load_inputs(_params(), "", _nodes([2, 3]), "", phase_nodes={"scan": text}, group_nodes={"2": _nodes([3])})
    mine = lists.for_runner(3)
    cut = parse_nodes_lines(mine["phase_nodes"]["scan"].splitlines(), "cut")
    assert [n.resourceId for n in cut.nodes] == [102, 103] and cut.header.totalCount == 5
    assert mine["group_nodes"] == {"2": _nodes([3])} and mine["nodes"] == _nodes([2, 3])  # rounds need whole lists
    assert own_nodes_text(text, parse_nodes_lines(text.splitlines(), "t"), 9).count("\n") == 1  # header only
    with pytest.raises(JobInputError, match=r"phase_nodes\[nope\]: no phase 'nope'"):
        load_inputs(_params(), "", _nodes([2]), "", phase_nodes={"nope": _nodes([2])})
    with pytest.raises(JobInputError, match=r"group_nodes\[2\]: line 3: invalid JSON"):
        load_inputs(_params(), "", _nodes([2]), "", group_nodes={"2": _nodes([2]) + "{oops\n"})


def test_inline_group_and_phase_lists_become_the_job_dirs_nodes_files_and_replace_old_ones(
        jobs: JobFiles, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    scan = _nodes([2, 2, 3])
    rt = jobs.runtime("9302", _params(marks), _nodes([2, 3, 3, 2, 2]), pass_through_env={"runnerId": 2},
                      phase_nodes={"scan": scan}, group_nodes={"2": _nodes([2, 2])})
    jd = rt.jobdir
    assert jd.phase_nodes("scan").read_text() == scan and stat.S_IMODE(jd.phase_nodes("scan").stat().st_mode) == 0o600
    assert jd.group_nodes(2).read_text() == _nodes([2, 2])
    rt.console.close()
    rt, outcome = jobs.run("9302", _params(marks), _nodes([2, 3, 3, 2, 2]), pass_through_env={"runnerId": 2},
                           phase_groups={1}, phase_nodes={"scan": _nodes([3, 2])}, group_nodes={})
    assert outcome.status == "succeed"
    assert marks.read_text() == "10.3.0.2 2\n"  # runner 2's node of the phase's own list, not of the job's
    assert not rt.jobdir.group_nodes(2).exists()  # a trigger's lists replace the earlier trigger's
    with pytest.raises(JobInputError, match=r"phase_nodes\[scan\]: line 2: field runnerId"):
        jobs.runtime("9302", _params(marks), _nodes([2]), phase_nodes={"scan": _nodes([2]).replace('"runnerId": 2', '"runnerId": "x"')})
