"""The engine's event stream as it ships: what a real job emits, in order, with readable keys."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoexec.events import stream as events
from autoexec.engine.run import ListSink, SpoolSink
from tests.fixtures_core import EXAMPLES, JobFiles, nodes_lines, run_runtime, script_op


def _run(jobs: JobFiles, job_id: str, params: dict | None, nodes: str | None = None,
         **req: object) -> tuple[list[events.Event], str]:
    rt = jobs.runtime(job_id, params, nodes, **req)
    sink = ListSink()
    outcome = run_runtime(rt, sink)
    rt.console.close()
    return sink.events, outcome.status


def test_demo_job_frames_every_node_of_every_group(jobs: JobFiles) -> None:
    params = json.loads((EXAMPLES / "demo" / "params.json").read_text())
    evs, status = _run(jobs, "8101", params, (EXAMPLES / "demo" / "nodes.jsonl").read_text())
    assert status == "succeed"
    assert all(e["v"] == events.VERSION for e in evs)
    assert evs[0]["event"] == "job_start" and evs[0]["job_id"] == "8101" and evs[-1]["event"] == "job_end"
    groups = [(e["event"], e["group"]) for e in evs if e["event"].startswith("group")]
    assert groups == [("group_start", 0), ("group_end", 0), ("group_start", 1), ("group_end", 1),
                      ("group_start", 2), ("group_end", 2)]
    starts = {e["key"]: e for e in evs if e["event"] == "node_start"}
    ends = {e["key"]: e for e in evs if e["event"] == "node_end"}
    assert starts and starts.keys() == ends.keys()
    for key, start in starts.items():  # each node ends after it started
        assert evs.index(start) < evs.index(ends[key])
    web1 = next(e for e in starts.values() if e["phase"] == "deploy" and e["node"] == "10.9.0.11-22-1001")
    assert web1["label"] == "web1 10.9.0.11:22 #1001" and Path(web1["log"]).is_file()
    assert ends[web1["key"]]["status"] == "succeed" and ends[web1["key"]]["exit_code"] == 0
    assert all(e["status"] == "succeed" for e in evs if e["event"] == "group_end")
    assert evs[-1]["message"] == "job succeed"


def test_failed_node_and_group_are_marked(jobs: JobFiles) -> None:
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner_target",
                                                      "operations": [script_op("boom_1", "exit 3", "runner_target")]}]},
                          {"groupNo": 1, "phases": [{"phaseName": "q", "phaseType": "runner_target",
                                                      "operations": [script_op("ok_1", "true", "runner_target")]}]}]}
    evs, status = _run(jobs, "8102", params, nodes_lines(1))
    assert status == "failed"
    kinds = [e["event"] for e in evs]
    assert kinds == ["job_start", "group_start", "phase_start", "node_start", "node_end", "phase_counts", "phase_end",
                     "group_end", "job_end"]
    assert evs[2]["phase"] == "p" and evs[2]["nodes"] == 1
    assert evs[4]["status"] == "failed" and evs[4]["exit_code"] == 3
    assert evs[5]["counts"]["failed"] == 1
    assert evs[6]["phase"] == "p" and evs[6]["status"] == "failed"
    assert evs[7]["status"] == "failed" and evs[7]["phases"] == {"p": "failed"}


def test_gray_scale_batches_report_their_own_round_not_the_running_total(jobs: JobFiles,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch task run per round must say what that round did (the two record paths disagreed)."""
    monkeypatch.setenv("AUTOEXEC_NODE_TASKS_MAX", "1")
    params = {"runFlow": [{"groupNo": 0, "execStrategy": "grayScale", "roundCount": 2, "phases": [
        {"phaseName": "p", "phaseType": "runner_target", "operations": [
            script_op("x_1", '[ "$NODE_NAME" != n2 ]', "runner_target", failIgnore=1)]}]}]}
    evs, status = _run(jobs, "8103", params, nodes_lines(5))
    assert status == "succeed"
    batches = [e for e in evs if e["event"] == "batch_end"]
    assert [b["counts"]["succeed"] + b["counts"]["ignored"] for b in batches] == [3, 2]
    assert batches[0]["counts"]["ignored"] == 1 and batches[1]["counts"]["ignored"] == 0
    starts = [e for e in evs if e["event"] == "batch_start"]
    assert [s["label"] for s in starts] == ["n1 10.1.0.1:22 #101 ..+2", "n4 10.1.0.4:22 #104 ..+1"]
    totals = [e["counts"] for e in evs if e["event"] == "phase_counts"]
    assert totals[-1]["succeed"] == 4 and totals[-1]["ignored"] == 1  # the phase's running total


def test_a_rerun_with_everything_done_says_nothing_to_do(jobs: JobFiles) -> None:
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner_target",
                                                      "operations": [script_op("ok_1", "true", "runner_target")]}]}]}
    _run(jobs, "8104", params, nodes_lines(2))
    evs, status = _run(jobs, "8104", None)
    assert status == "succeed"
    assert not [e for e in evs if e["event"] == "node_start"]
    assert evs[-1]["message"].startswith("nothing to do: every node had already succeeded")
    forced, _ = _run(jobs, "8104", None, force=True)
    assert forced[-1]["message"] == "job succeed"


def test_a_rerun_of_a_batch_phase_with_everything_done_says_nothing_to_do(jobs: JobFiles,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A phase too large for a record per node is one batch; a batch whose nodes were all skipped
    ran nothing, so the job still says "nothing to do" (it said "job succeed")."""
    monkeypatch.setenv("AUTOEXEC_NODE_TASKS_MAX", "1")
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner_target",
                                                      "operations": [script_op("ok_1", "true", "runner_target")]}]}]}
    first, _ = _run(jobs, "8105", params, nodes_lines(3))
    assert first[-1]["message"] == "job succeed" and [e["event"] for e in first].count("batch_start") == 1
    evs, status = _run(jobs, "8105", None)
    assert status == "succeed" and [e["event"] for e in evs].count("batch_start") == 1
    assert evs[-1]["message"].startswith("nothing to do: every node had already succeeded")


def test_spool_lines_decode_and_a_closed_spool_never_fails_the_job(tmp_path: Path) -> None:
    spool = SpoolSink(tmp_path / "s.jsonl")
    spool.emit(events.make("group_start", group=3))
    spool.close()
    spool.emit(events.make("group_start", group=4))  # closed descriptor: dropped, no exception
    lines = spool.path.read_bytes().splitlines()
    assert len(lines) == 1 and events.decode(lines[0])["group"] == 3  # type: ignore[index]
    assert events.decode(b'{"v":1,"event":"grou') is None  # a torn last line
    assert events.decode(b'{"v":99,"event":"group_start"}') is None  # a newer format: not guessed at
