"""The job side of the Prefect record: what a real job writes to its event spool."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoexec.engine import run_job
from autoexec.recording import EventSpool, recorded_group_runner
from tests.fixtures_core import EXAMPLES, JobFiles, nodes_lines, script_op


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run(jobs: JobFiles, tmp_path: Path, job_id: str, params: dict, nodes: str) -> tuple[list[dict], str]:
    rt = jobs.runtime(job_id, params, nodes)
    spool = EventSpool(tmp_path / f"{job_id}.jsonl")
    outcome = run_job(rt, recorded_group_runner(spool))
    spool.close()
    rt.console.close()
    return _events(spool.path), outcome.status


def test_demo_job_frames_every_node_of_every_group(jobs: JobFiles, tmp_path: Path) -> None:
    params = json.loads((EXAMPLES / "demo" / "params.json").read_text())
    events, status = _run(jobs, tmp_path, "8101", params, (EXAMPLES / "demo" / "nodes.jsonl").read_text())
    assert status == "succeed"
    groups = [(e["e"], e["group"]) for e in events if e["e"].startswith("group")]
    assert groups == [("group_start", 0), ("group_end", 0), ("group_start", 1), ("group_end", 1),
                      ("group_start", 2), ("group_end", 2)]
    starts = {e["k"]: e for e in events if e["e"] == "node_start"}
    ends = {e["k"]: e for e in events if e["e"] == "node_end"}
    assert starts and starts.keys() == ends.keys()
    for key, start in starts.items():  # each node ends after it started
        assert events.index(start) < events.index(ends[key])
    deploy = [e for e in starts.values() if e["phase"] == "deploy"]
    assert {e["node"] for e in deploy} >= {"10.9.0.11-22-1001", "10.9.0.15-22-1005"}
    end = next(e for e in ends.values() if starts[e["k"]]["node"] == "10.9.0.11-22-1001" and
               starts[e["k"]]["phase"] == "deploy")
    assert end["status"] == "succeed" and Path(end["log"]).is_file()
    assert all(not e["failed"] for e in events if e["e"] == "group_end")


def test_failed_node_and_group_are_marked(jobs: JobFiles, tmp_path: Path) -> None:
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner_target",
                                                      "operations": [script_op("boom_1", "exit 3", "runner_target")]}]},
                          {"groupNo": 1, "phases": [{"phaseName": "q", "phaseType": "runner_target",
                                                      "operations": [script_op("ok_1", "true", "runner_target")]}]}]}
    events, status = _run(jobs, tmp_path, "8102", params, nodes_lines(1))
    assert status == "failed"
    assert [e["e"] for e in events] == ["group_start", "node_start", "node_end", "group_end"]
    assert events[2]["status"] == "failed" and events[2]["summary"]["exitCode"] == 3
    assert events[3]["failed"] is True and events[3]["phases"] == {"p": "failed"}


def test_large_phase_is_one_batch_with_counts(jobs: JobFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOEXEC_NODE_TASKS_MAX", "3")
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner_target", "operations": [
        script_op("x_1", '[ "$NODE_NAME" != n2 ]', "runner_target", failIgnore=1)]}]}]}
    events, status = _run(jobs, tmp_path, "8103", params, nodes_lines(5))
    assert status == "succeed"
    assert [e["e"] for e in events] == ["group_start", "batch_start", "batch_end", "group_end"]
    assert events[1]["label"] == "10.1.0.1-22-101..+4"
    assert events[2]["summary"] == {"nodes": 5, "succeed": 4, "failed": 0, "ignored": 1, "skipped": 0, "paused": 0}


def test_a_spool_that_cannot_be_written_never_fails_the_job(tmp_path: Path) -> None:
    spool = EventSpool(tmp_path / "s.jsonl")
    spool.close()
    spool.emit("node_start", k=1)  # closed descriptor: dropped, no exception
    assert spool.path.read_text() == ""
