"""The node executor (:mod:`autoexec.engine.executor`) on its own: one ``NodeRun`` of a runner phase,
its ops run as real local child processes, its files in a temp AUTOEXEC_HOME."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

import autoexec.engine.executor as executor
from autoexec.engine.executor import NodeResult, NodeRun
from autoexec.engine.groups import plan_phase
from autoexec.job.runlinks import RunLinks
from autoexec.job.runtime import JobRuntime
from tests.fixtures_core import JobFiles, script_op
from tests.waiting import wait_until


def _runtime(jobs: JobFiles, job_id: str, ops: list[dict[str, Any]], **req: Any) -> JobRuntime:
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner", "operations": ops}]}]}
    return jobs.runtime(job_id, params, **req)


def _node_run(rt: JobRuntime, links: RunLinks | None = None) -> NodeRun:
    group = rt.params.runFlow[0]
    plan = plan_phase(rt, group, group.phases[0], 0, None)
    assert [n.resourceId for n in plan.nodes] == [0]
    return NodeRun(rt, plan, plan.nodes[0], links)


def _execute(rt: JobRuntime, links: RunLinks | None = None) -> NodeResult:
    return _node_run(rt, links).execute()


def _status(rt: JobRuntime) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(rt.jobdir.node_status("p", "local-0-0").read_text())
    return data


def _log(rt: JobRuntime) -> str:
    return rt.jobdir.node_log("p", "local-0-0").read_text()


def _count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_ops_run_in_order_and_the_node_records_success(jobs: JobFiles) -> None:
    trace = jobs.tmp / "trace"
    rt = _runtime(jobs, "1", [
        script_op("first_1", f'echo first >> {trace}\necho \'{{"answer": "42"}}\' > "$OUTPUT_PATH"\n',
                  output={"answer": {"type": "text"}}),
        script_op("second_1", f'echo second >> {trace}\n'),
    ])
    links = RunLinks()
    result = _execute(rt, links)
    assert result.status == "succeed" and result.exit_code == 0 and result.message == ""
    assert trace.read_text().split() == ["first", "second"]
    assert result.outputs == ["first_1"]
    status = _status(rt)
    assert status["status"] == "succeed" and status["first_1"] == status["second_1"] == "succeed"
    assert json.loads(rt.jobdir.op_output_dir("local-0-0").joinpath("first_1.json").read_text()) == {"answer": "42"}
    log = _log(rt)
    assert log.index("------START--[first_1]") < log.index("------END--[first_1]") < log.index("------START--[second_1]")
    assert "FINE: Node execute complete, status:succeed." in log
    told = [c[1]["status"] for c in rt.notifier.calls if c[0] == "node_status"]
    assert told == ["running", "succeed"]
    assert links.running.get("p", 0) is None, "the node leaves the job socket's routing table when it ends"


def test_a_succeeded_op_is_not_run_again_unless_forced(jobs: JobFiles) -> None:
    runs = jobs.tmp / "runs"
    ops = [script_op("once_1", f'echo x >> {runs}\necho \'{{"v": "1"}}\' > "$OUTPUT_PATH"\n', output={"v": {}})]
    rt = _runtime(jobs, "2", ops)
    assert _execute(rt).status == "succeed" and _count(runs) == 1

    assert rt.runner_output is not None
    rt.runner_output.update({}, removed=("once_1",))
    again = _execute(rt)
    assert again.status == "succeed" and _count(runs) == 1
    assert "Operation once_1 has been executed in status:succeed, skip." in _log(rt)
    assert again.outputs == ["once_1"], "the skipped op's output is restored from its op output file"

    rt.console.close()
    forced = jobs.runtime("2", None, force=True)  # the spec is frozen: --force is a new invocation
    assert _execute(forced).status == "succeed" and _count(runs) == 2
    forced.console.close()


def test_a_failed_op_fails_the_node_and_later_ops_do_not_run(jobs: JobFiles) -> None:
    trace = jobs.tmp / "trace"
    rt = _runtime(jobs, "3", [script_op("bad_1", "echo going down\nexit 3\n"),
                              script_op("after_1", f"echo ran >> {trace}\n")])
    result = _execute(rt)
    assert result.status == "failed" and result.exit_code == 3
    assert "exited with status 3" in result.message
    assert not trace.exists()
    status = _status(rt)
    assert status["status"] == "failed" and status["bad_1"] == "failed" and "after_1" not in status
    assert "going down" in _log(rt)


def test_a_failed_attempt_is_retried_and_the_retry_counts(jobs: JobFiles) -> None:
    tries = jobs.tmp / "tries"
    flaky = f'echo t >> {tries}\n[ "$(wc -l < {tries})" -ge 2 ]\n'
    rt = _runtime(jobs, "4", [script_op("flaky_1", flaky, retries=2, retryDelay=0)])
    result = _execute(rt)
    assert result.status == "succeed" and _count(tries) == 2
    log = _log(rt)
    assert "Operation flaky_1 attempt 1/3 failed" in log and "Operation flaky_1 attempt 2/3." in log
    assert "attempt 3/3" not in log


def test_retries_run_out_and_the_node_fails(jobs: JobFiles) -> None:
    tries = jobs.tmp / "tries"
    rt = _runtime(jobs, "5", [script_op("never_1", f"echo t >> {tries}\nexit 1\n", retries=1, retryDelay=0)])
    assert _execute(rt).status == "failed" and _count(tries) == 2


def test_fail_ignore_marks_the_node_ignored_and_the_next_op_runs(jobs: JobFiles) -> None:
    trace = jobs.tmp / "trace"
    rt = _runtime(jobs, "6", [script_op("soft_1", "exit 2\n", failIgnore=1),
                              script_op("next_1", f"echo ran >> {trace}\n")])
    result = _execute(rt)
    assert result.status == "ignored" and trace.read_text() == "ran\n"
    status = _status(rt)
    assert status["status"] == "ignored" and status["soft_1"] == "failed" and status["next_1"] == "succeed"


def test_an_if_block_runs_the_branch_its_condition_picks(jobs: JobFiles) -> None:
    trace = jobs.tmp / "trace"
    block = {"opId": "if_1", "opName": "native/IF-Block", "opType": "native", "condition": "1 == 2",
             "if": [script_op("then_1", f"echo then >> {trace}\n")],
             "else": [script_op("else_1", f"echo else >> {trace}\n")]}
    rt = _runtime(jobs, "7", [block])
    assert _execute(rt).status == "succeed"
    assert trace.read_text() == "else\n"
    assert "INFO: IF condition [ 1 == 2 ] = False" in _log(rt)


def test_a_job_paused_before_the_node_runs_no_op(jobs: JobFiles) -> None:
    trace = jobs.tmp / "trace"
    rt = _runtime(jobs, "8", [script_op("any_1", f"echo ran >> {trace}\n")])
    rt.control.pause()
    result = _execute(rt)
    assert result.status == "paused" and not trace.exists()
    assert "INFO: Node running paused." in _log(rt)


def test_abort_kills_the_running_op_and_the_node_ends_aborted(jobs: JobFiles) -> None:
    rt = _runtime(jobs, "9", [script_op("long_1", "echo started\nsleep 60\n")])
    links = RunLinks()
    run = _node_run(rt, links)
    done: list[NodeResult] = []
    thread = threading.Thread(target=lambda: done.append(run.execute()), daemon=True)
    thread.start()
    path = rt.jobdir.node_status("p", "local-0-0")
    wait_until(lambda: path.exists() and _status(rt).get("long_1") == "running", what="the op to start")
    assert links.running.get("p", 0) is run, "a running node is in the job socket's routing table"
    rt.control.abort()
    thread.join(timeout=60)
    assert done and done[0].status == "aborted"
    assert _status(rt)["status"] == "aborted"


def test_an_op_that_raises_fails_with_its_message_and_a_traceback(jobs: JobFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(ctx: Any, op: Any) -> Any:
        raise RuntimeError("the dispatcher broke")

    monkeypatch.setattr(executor, "run_operation", broken)
    rt = _runtime(jobs, "10", [script_op("x_1", "true\n")])
    result = _execute(rt)
    assert result.status == "failed" and result.message == "the dispatcher broke"
    log = _log(rt)
    assert "ERROR: Error ocurred. the dispatcher broke" in log and "Traceback" in log


def test_the_result_message_is_masked(jobs: JobFiles) -> None:
    rt = _runtime(jobs, "11", [{"opId": "fail_1", "opName": "native/failjob", "opType": "native",
                                "opt": {"message": "token s3cr3t-value leaked"}, "desc": {}}])
    rt.masker.add(["s3cr3t-value"])
    result = _execute(rt)
    assert result.status == "failed" and "s3cr3t-value" not in result.message and "token" in result.message
    assert "s3cr3t-value" not in _log(rt)


def test_summary_is_what_the_task_result_carries() -> None:
    result = NodeResult(node="local-0-0", status="failed", duration=1.23456, exit_code=3, warn_count=2,
                        outputs=["a_1"], message="bad")
    assert result.summary() == {"node": "local-0-0", "status": "failed", "exitCode": 3, "duration": 1.235,
                                "warnCount": 2, "outputs": ["a_1"], "message": "bad"}
