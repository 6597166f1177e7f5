"""Per-op retries (``retries``/``retryDelay``) and failure thresholds (``maxFailCount``/
``maxFailPercent``), through the real engine on a thread pool."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from autoexec.models.params import JobInputError, parse_params
from tests.fixtures_core import JobFiles, nodes_lines, run_runtime, script_op
from tests.waiting import wait_until


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _phase(name: str, *ops: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"phaseName": name, "phaseType": "runner_target", "operations": list(ops), **extra}


# --- retries ---------------------------------------------------------------------------------
def test_failing_attempts_are_retried_each_visible_and_a_succeeded_op_never_reruns(jobs: JobFiles) -> None:
    runs = jobs.tmp / "runs.txt"
    flaky = f'echo "flaky $NODE_NAME" >> {runs}\n[ "$(grep -c flaky {runs})" -ge 3 ]\n'
    params = {"runFlow": [{"groupNo": 0, "phases": [_phase(
        "p", script_op("first_1", f'echo "first $NODE_NAME" >> {runs}\n', "runner_target"),
        script_op("flaky_1", flaky, "runner_target", retries=3, retryDelay=0.05))]}]}
    rt, outcome = jobs.run("301", params, nodes_lines(1))
    assert outcome.status == "succeed"
    assert runs.read_text().splitlines() == ["first n1", "flaky n1", "flaky n1", "flaky n1"]
    log = rt.jobdir.node_log("p", "10.1.0.1-22-101").read_text()
    for attempt in (1, 2, 3):
        assert f"INFO: Operation flaky_1 attempt {attempt}/4." in log
    assert "INFO: Operation flaky_1 attempt 4/4." not in log
    assert log.count("WARN: Operation flaky_1 attempt") == 2 and "retry in 0.05 second(s)." in log
    assert log.count("------START--[first_1]") == 1
    assert _read(rt.jobdir.node_status("p", "10.1.0.1-22-101"))["flaky_1"] == "succeed"


def test_an_op_failing_every_attempt_fails_the_node_once_retries_are_used_up(jobs: JobFiles) -> None:
    runs = jobs.tmp / "runs.txt"
    params = {"runFlow": [{"groupNo": 0, "phases": [_phase(
        "p", script_op("bad_1", f'echo x >> {runs}\nexit 4\n', "runner_target", retries=1))]}]}
    rt, outcome = jobs.run("302", params, nodes_lines(1))
    assert outcome.status == "failed" and len(runs.read_text().splitlines()) == 2
    status = _read(rt.jobdir.node_status("p", "10.1.0.1-22-101"))
    assert status["status"] == "failed" and status["bad_1"] == "failed"


@pytest.mark.parametrize("stop", ["abort", "pause"])
def test_abort_or_pause_ends_the_retry_wait_at_once(jobs: JobFiles, stop: str) -> None:
    params = {"runFlow": [{"groupNo": 0, "phases": [_phase(
        "p", script_op("bad_1", "exit 1\n", "runner_target", retries=5, retryDelay=3600))]}]}
    rt = jobs.runtime(f"303{stop}", params, nodes_lines(1))
    log = rt.jobdir.node_log("p", "10.1.0.1-22-101")
    result: dict[str, Any] = {}
    job = threading.Thread(target=lambda: result.update(outcome=run_runtime(rt)), daemon=True)
    job.start()
    wait_until(lambda: log.exists() and "retry in 3600 second(s)." in log.read_text(), 60, "the first retry wait")
    getattr(rt.control, stop)()
    job.join(120)  # far below the hour of retryDelay: the wait ended on the stop event
    assert not job.is_alive()
    rt.console.close()
    expected = "aborted" if stop == "abort" else "paused"
    assert result["outcome"].status == expected
    status = _read(rt.jobdir.node_status("p", "10.1.0.1-22-101"))
    assert status["status"] == expected and status["bad_1"] == "failed"  # a resume runs it again
    assert f"INFO: Operation bad_1 retry cancelled, job {expected}." in log.read_text()


@pytest.mark.parametrize("bad, message", [({"retries": -1}, "retries"), ({"retries": True}, "retries"),
                                           ({"retryDelay": "5"}, "retryDelay")])
def test_bad_retry_fields_are_one_line_errors(bad: dict, message: str) -> None:
    op = {"opId": "a_1", "opName": "a", **bad}
    with pytest.raises(JobInputError) as exc:
        parse_params({"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "operations": [op]}]}]}, "params.json")
    assert f"runFlow[0].phases[0].operations[0].{message}" in str(exc.value)


# --- failure thresholds ----------------------------------------------------------------------
def _failing(names: str, runs: Path) -> dict[str, Any]:
    """Fails on the nodes named in ``names`` (space separated), records every node that ran."""
    return script_op("op_1", f'echo "$NODE_NAME" >> {runs}\ncase " {names} " in *" $NODE_NAME "*) exit 3;; esac\n',
                     "runner_target")


def _two_groups(phase: dict[str, Any], runs: Path, **job: Any) -> dict[str, Any]:
    after = script_op("after_1", f'echo after >> {runs}\n')
    return {"roundCount": 5, **job, "runFlow": [
        {"groupNo": 0, "phases": [phase]},
        {"groupNo": 1, "phases": [{"phaseName": "after", "phaseType": "runner", "operations": [after]}]}]}


def test_without_a_threshold_the_first_failure_stops_new_nodes(jobs: JobFiles) -> None:
    runs = jobs.tmp / "runs.txt"
    rt, outcome = jobs.run("311", _two_groups(_phase("p", _failing("n1", runs)), runs), nodes_lines(5))
    assert outcome.status == "failed" and runs.read_text().splitlines() == ["n1"]
    assert outcome.message == "phase p: 1 of 5 node(s) failed"


def test_failures_within_max_fail_count_let_the_job_run_on_but_it_ends_failed(jobs: JobFiles) -> None:
    runs = jobs.tmp / "runs.txt"
    params = _two_groups(_phase("p", _failing("n2 n4", runs), maxFailCount=2), runs)
    rt, outcome = jobs.run("312", params, nodes_lines(5))
    assert runs.read_text().splitlines() == ["n1", "n2", "n3", "n4", "n5", "after"]
    assert outcome.status == "failed" and outcome.exit_code == 1
    assert outcome.groups == {0: {"p": "failed"}, 1: {"after": "succeed"}}
    assert "Failure threshold exceeded" not in rt.jobdir.console_log.read_text()


def test_passing_max_fail_count_starts_no_new_node_and_says_why(jobs: JobFiles) -> None:
    runs = jobs.tmp / "runs.txt"
    params = _two_groups(_phase("p", _failing("n1 n2 n3", runs), maxFailCount=1), runs)
    rt, outcome = jobs.run("313", params, nodes_lines(5))
    assert runs.read_text().splitlines() == ["n1", "n2"]  # one node at a time: n3..n5 never start
    assert not rt.jobdir.node_status("p", "10.1.0.3-22-103").exists()
    why = "phase p: 2 of 5 node(s) failed, more than maxFailCount 1"
    assert f"ERROR: Failure threshold exceeded, {why}; no new node starts." in rt.jobdir.console_log.read_text()
    assert outcome.status == "failed" and outcome.message == why and 1 not in outcome.groups


def test_job_level_max_fail_percent_applies_to_phases_without_their_own(jobs: JobFiles) -> None:
    runs = jobs.tmp / "runs.txt"
    params = _two_groups(_phase("p", _failing("n1 n2 n3", runs)), runs, maxFailPercent=40)
    _, outcome = jobs.run("314", params, nodes_lines(5))
    assert runs.read_text().splitlines() == ["n1", "n2", "n3"]  # 2 of 5 = 40 % tolerated, the 3rd is past it
    assert outcome.message == "phase p: 3 of 5 node(s) failed (60%), more than maxFailPercent 40"


def test_gray_scale_counts_failures_per_round(jobs: JobFiles) -> None:
    runs = jobs.tmp / "runs.txt"
    phase = _phase("p", _failing("n1 n4 n5", runs), maxFailCount=1)
    params = {"runFlow": [{"groupNo": 0, "execStrategy": "grayScale", "roundCount": 2, "phases": [phase]}]}
    rt, outcome = jobs.run("315", params, nodes_lines(5))
    ran = runs.read_text().splitlines()
    # round 1 (n1..n3): one failure, tolerated; round 2 (n4, n5): two failures, past the limit
    assert sorted(ran[:3]) == ["n1", "n2", "n3"] and sorted(ran[3:]) == ["n4", "n5"]
    assert outcome.status == "failed" and outcome.message.startswith("phase p round 2/2: 2 of 2 node(s) failed")


def test_the_reason_reaches_the_job_end_event_and_the_prefect_final_state(jobs: JobFiles) -> None:
    """One record for CLI and deployment runs: the job_end event (what the recorder and a
    deployment's record thread turn into the final state) and the deployment flow's own return
    state carry the threshold's reason."""
    from autoexec.flows.job_flow import outcome_state
    from autoexec.engine.run import ListSink

    runs = jobs.tmp / "runs.txt"
    params = _two_groups(_phase("p", _failing("n1 n2 n3", runs), maxFailCount=1), runs)
    rt = jobs.runtime("316", params, nodes_lines(5))
    sink = ListSink()
    outcome = run_runtime(rt, sink)
    rt.console.close()
    why = "phase p: 2 of 5 node(s) failed, more than maxFailCount 1"
    end = sink.events[-1]
    assert end["event"] == "job_end" and end["message"] == f"job failed: {why}"
    assert outcome_state(outcome, end["message"]).message == f"job failed: {why}"


def test_nodes_failing_together_in_a_concurrent_phase_halt_once_with_one_reason(jobs: JobFiles) -> None:
    """Five nodes run at once (roundCount 1) and fail at the same moment: a threshold of one
    failure is passed by several of them concurrently, yet exactly one of them halts the job,
    the halt is logged once, and every failed node counts once."""
    ready = jobs.tmp / "ready"
    ready.mkdir()
    # each node waits until all five started, so their failures meet (bounded: never hangs)
    body = (f'touch {ready}/$NODE_NAME\nn=0\nwhile [ "$(ls {ready} | wc -l)" -lt 5 ] && [ $n -lt 600 ]; do '
            f'sleep 0.1; n=$((n+1)); done\nexit 3\n')
    phase = _phase("p", script_op("op_1", body, "runner_target"), maxFailCount=1)
    rt, outcome = jobs.run("317", {"roundCount": 1, "runFlow": [{"groupNo": 0, "phases": [phase]}]},
                           nodes_lines(5))
    assert sorted(p.name for p in ready.iterdir()) == ["n1", "n2", "n3", "n4", "n5"]
    console = rt.jobdir.console_log.read_text()
    assert console.count("ERROR: Failure threshold exceeded") == 1
    assert outcome.status == "failed"
    assert outcome.message.startswith("phase p: ") and "more than maxFailCount 1" in outcome.message
    assert f"ERROR: Failure threshold exceeded, {outcome.message}; no new node starts." in console


def test_control_counts_a_node_once_and_names_one_halter_among_racing_failures() -> None:
    from autoexec.job.control import JobControl
    from autoexec.job.thresholds import FailGate, FailLimit

    ctl = JobControl()
    gate = FailGate(FailLimit(max_count=1), 40, "phase p")
    ctl.set_fail_gate("p", gate)
    assert ctl.node_failed("p", "a") is None
    assert ctl.node_failed("p", "a") is None and gate.failed == 1  # a repeated report is not a new failure
    start = threading.Barrier(20)
    reasons: list[str | None] = []
    lock = threading.Lock()

    def fail(i: int) -> None:
        start.wait(30)
        why = ctl.node_failed("p", f"n{i}")
        with lock:
            reasons.append(why)

    threads = [threading.Thread(target=fail, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(reasons) == 20 and len([r for r in reasons if r]) == 1
    assert ctl.halted and ctl.halt_reason == next(r for r in reasons if r) and gate.failed == 21
    ctl.set_fail_gate("p", FailGate(FailLimit(max_count=5), 3, "phase p round 2/2"))
    assert ctl.node_failed("p", "a") is None  # a new dispatch counts its nodes afresh (tolerated)


def test_signal_handlers_are_installed_once_per_job() -> None:
    """The CLI and a deployment's flow install them before taking the job's lock; nothing later
    replaces them (the recorder and the flow-run path installed them a second time)."""
    import signal

    from autoexec.job.control import JobControl

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)}
    try:
        ctl = JobControl()
        ctl.install_signal_handlers()
        first = signal.getsignal(signal.SIGTERM)
        ctl.install_signal_handlers()
        assert signal.getsignal(signal.SIGTERM) is first
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
