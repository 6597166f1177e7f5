"""The coordinator's steps (the cross-runner barriers) and the one-runner, one-round narrowing of
a part, through the real engine."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autoexec.models.nodes import parse_nodes_lines
from autoexec.models.params import parse_params
from autoexec.multirunner.plan import Step, plan_steps
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
