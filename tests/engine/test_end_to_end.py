"""The engine end to end (loader -> groups -> phases -> executor -> stores), run as it ships:
:func:`autoexec.engine.run.run_engine`, the path of CLI and deployment runs alike. Its events go
to a list here; the integration tests record them in a real Prefect server."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from tests.fixtures_core import EXAMPLES, JobFiles, nodes_lines, run_runtime, script_op
from tests.waiting import wait_until


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_demo_job_writes_every_file_where_the_original_does(jobs: JobFiles) -> None:
    params = json.loads((EXAMPLES / "demo" / "params.json").read_text())
    rt, outcome = jobs.run("624490098515988", params, (EXAMPLES / "demo" / "nodes.jsonl").read_text(), first_fire=True)
    assert outcome.status == "succeed" and outcome.exit_code == 0
    root = rt.jobdir.root
    assert root == jobs.home / "data/job/624/490/098/515/988"
    assert (root / "params.json").is_file() and (root / "nodes.json").is_file()
    status = _read(root / "status/deploy/10.9.0.11-22-1001.json")
    assert status["status"] == "succeed" and status["deploy_1"] == "succeed" and status["currenOp"] == "deploy_1"
    assert {"pid", "interact", "warnCount", "opPid"} <= set(status)
    output = _read(root / "output/10.9.0.13-22-1003.json")
    assert output["nodeEnv"] == {} and output["precheck_1"] == {"reachable": "yes"}
    assert output["verify_1"] == {"version": "v1.2.3"}
    assert _read(root / "output/local-0-0.json")["prepare_1"] == {"artifact": "app-v1.2.3.tar.gz"}
    assert _read(root / "output-op/10.9.0.13-22-1003/precheck_1.json") == {"reachable": "yes"}
    log = (root / "log/deploy/10.9.0.11-22-1001.txt").read_text()
    assert log.splitlines()[0].endswith("======[1001]10.9.0.11:22 Launched by ssh://deploy@10.9.0.11:22======")
    assert "------START--[deploy_1] localremote execution start..." in log
    history = list((root / "log/deploy/10.9.0.11-22-1001.hislog").iterdir())
    assert len(history) == 1 and history[0].name.endswith(".succeed.anonymous.txt")
    assert history[0].stat().st_ino == (root / "log/deploy/10.9.0.11-22-1001.txt").stat().st_ino
    assert (root / "log/console.txt").read_text().count("execute succeed.") == 18
    assert list((root / "log/console.hislog").iterdir())


def test_gray_scale_runs_batches_through_all_phases_with_runner_phases_pinned(jobs: JobFiles) -> None:
    trace = jobs.tmp / "trace.txt"
    rec = f'echo "$AUTOEXEC_PHASE_NAME ${{NODE_NAME:-runner}}" >> {trace}\n'
    params = {"runFlow": [{"groupNo": 0, "execStrategy": "grayScale", "roundCount": 2, "phases": [
        {"phaseName": "first", "phaseType": "runner", "execRound": "first", "operations": [script_op("f_1", rec)]},
        {"phaseName": "a", "phaseType": "runner_target", "operations": [script_op("a_1", rec, "runner_target")]},
        {"phaseName": "b", "phaseType": "runner_target", "operations": [script_op("b_1", rec, "runner_target")]},
        {"phaseName": "mid", "phaseType": "runner", "execRound": "middle", "operations": [script_op("m_1", rec)]},
        {"phaseName": "last", "phaseType": "runner", "execRound": "last", "operations": [script_op("l_1", rec)]},
    ]}]}
    _, outcome = jobs.run("31", params, nodes_lines(5))
    assert outcome.status == "succeed"
    lines = trace.read_text().splitlines()
    phases = [ln.split()[0] for ln in lines]
    assert phases.count("first") == phases.count("mid") == phases.count("last") == 1
    round1 = {"a n1", "a n2", "a n3", "b n1", "b n2", "b n3"}
    first_b = phases.index("b")
    assert phases[0] == "first"
    assert set(lines[1:4]) == {"a n1", "a n2", "a n3"} and set(lines[4:7]) == {"b n1", "b n2", "b n3"}
    assert set(lines[1:7]) == round1 and first_b == 4
    assert lines[7] == "mid runner"  # middle of 2 rounds = round 1, after its target phases
    assert set(lines[8:10]) == {"a n4", "a n5"} and set(lines[10:12]) == {"b n4", "b n5"}
    assert lines[12] == "last runner"


def test_failure_stops_the_job_before_the_next_group(jobs: JobFiles) -> None:
    params = json.loads((EXAMPLES / "fail" / "params.json").read_text())
    rt, outcome = jobs.run("41", params, (EXAMPLES / "fail" / "nodes.jsonl").read_text())
    assert outcome.status == "failed" and outcome.exit_code == 1
    assert outcome.groups == {0: {"check": "failed"}}
    assert _read(rt.jobdir.node_status("check", "10.9.0.13-22-1003"))["status"] == "failed"
    assert not rt.jobdir.node_status("never", "local-0-0").exists()
    console = rt.jobdir.console_log.read_text()
    assert "ERROR: Node(1003) 10.9.0.13:22 execute failed: diskcheck exited with status 3." in console


def test_fail_ignore_marks_the_node_ignored_and_the_job_goes_on(jobs: JobFiles) -> None:
    params = json.loads((EXAMPLES / "failignore" / "params.json").read_text())
    rt, outcome = jobs.run("42", params, (EXAMPLES / "failignore" / "nodes.jsonl").read_text())
    assert outcome.status == "succeed" and outcome.exit_code == 0
    assert outcome.groups == {0: {"optional": "completed"}, 1: {"finish": "succeed"}}
    status = _read(rt.jobdir.node_status("optional", "10.9.0.12-22-1002"))
    assert status["status"] == "ignored" and status["cleanup_1"] == "failed" and status["report_1"] == "succeed"


def test_resume_skips_finished_nodes_and_ops_and_reuses_outputs(jobs: JobFiles) -> None:
    counter = jobs.tmp / "runs.txt"
    flag = jobs.tmp / "n2-may-pass"
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner_target", "operations": [
        script_op("one_1", f'echo "one $NODE_NAME" >> {counter}\necho \'{{"v": "x"}}\' > "$OUTPUT_PATH"\n',
                  "runner_target", output={"v": {"type": "text"}}),
        script_op("two_1", f'echo "two $NODE_NAME" >> {counter}\n[ "$NODE_NAME" != n2 ] || [ -e {flag} ]\n',
                  "runner_target")]}]}]}
    rt, outcome = jobs.run("51", params, nodes_lines(3))
    assert outcome.status == "failed"
    assert sorted(counter.read_text().splitlines()) == ["one n1", "one n2", "one n3", "two n1", "two n2", "two n3"]
    counter.unlink()
    flag.touch()
    rt, outcome = jobs.run("51")
    assert outcome.status == "succeed"
    assert counter.read_text().splitlines() == ["two n2"]  # only n2's failed op ran again
    assert _read(rt.jobdir.node_output("10.1.0.2-22-102"))["one_1"] == {"v": "x"}
    assert "INFO: Operation one_1 has been executed in status:succeed, skip." in \
        rt.jobdir.node_log("p", "10.1.0.2-22-102").read_text()
    counter.unlink()
    _, outcome = jobs.run("51", force=True)
    assert len(counter.read_text().splitlines()) == 6


def test_filters_narrow_the_run(jobs: JobFiles) -> None:
    counter = jobs.tmp / "runs.txt"
    rec = f'echo "$AUTOEXEC_PHASE_NAME ${{NODE_NAME:-runner}}" >> {counter}\n'
    params = {"runFlow": [
        {"groupNo": 0, "phases": [{"phaseName": "a", "phaseType": "runner_target", "operations": [script_op("a_1", rec, "runner_target")]},
                                  {"phaseName": "b", "phaseType": "runner_target", "operations": [script_op("b_1", rec, "runner_target")]}]},
        {"groupNo": 1, "phases": [{"phaseName": "c", "phaseType": "runner", "operations": [script_op("c_1", rec)]}]}]}
    jobs.run("61", params, nodes_lines(3), phases={"b"}, node_ids={102, 103})
    assert sorted(counter.read_text().splitlines()) == ["b n2", "b n3"]
    counter.unlink()
    jobs.run("61", phase_groups={1})
    assert counter.read_text().splitlines() == ["c runner"]


def test_abort_kills_the_whole_process_group_and_marks_nodes_aborted(jobs: JobFiles) -> None:
    pids = jobs.tmp / "pids"
    pids.mkdir()
    script = f'sleep 300 &\necho $! > {pids}/$NODE_NAME.child\necho $$ > {pids}/$NODE_NAME.tool\nwait\n'
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner_target",
                                                      "operations": [script_op("s_1", script, "runner_target")]}]}]}
    rt = jobs.runtime("71", params, nodes_lines(2))
    def abort_when_started() -> None:
        wait_until(lambda: len([p for p in pids.glob("*.tool") if p.read_text().strip()]) >= 2, 20, required=False)
        rt.control.abort()

    threading.Thread(target=abort_when_started, daemon=True).start()
    started = time.monotonic()
    outcome = run_runtime(rt)
    assert time.monotonic() - started < 15
    assert outcome.status == "aborted" and outcome.exit_code == 1
    for pid_file in pids.iterdir():
        pid = int(pid_file.read_text())
        assert not _alive(pid), f"{pid_file.name} survived the abort"
    assert _read(rt.jobdir.node_status("p", "10.1.0.1-22-101"))["status"] == "aborted"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_pause_stops_at_the_next_op_boundary_and_resume_continues(jobs: JobFiles) -> None:
    gate = jobs.tmp / "gate"
    done = jobs.tmp / "done.txt"
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner_target", "operations": [
        script_op("wait_1", f'touch {gate}.$NODE_NAME\nsleep 0.5\n', "runner_target"),
        script_op("after_1", f'echo "$NODE_NAME" >> {done}\n', "runner_target")]}]}]}
    rt = jobs.runtime("81", params, nodes_lines(2))
    def pause_when_started() -> None:
        while len(list(jobs.tmp.glob("gate.*"))) < 2:
            time.sleep(0.02)
        rt.control.pause()

    threading.Thread(target=pause_when_started, daemon=True).start()
    outcome = run_runtime(rt)
    assert outcome.status == "paused" and outcome.exit_code == 0
    assert not done.exists()
    status = _read(rt.jobdir.node_status("p", "10.1.0.1-22-101"))
    assert status["status"] == "paused" and status["wait_1"] == "succeed" and "after_1" not in status
    _, outcome = jobs.run("81")
    assert outcome.status == "succeed" and sorted(done.read_text().split()) == ["n1", "n2"]


def test_tool_environment_and_argv_are_exact(jobs: JobFiles) -> None:
    dump = jobs.tmp / "env.json"
    script = ('import json, os, sys\n'
              f'json.dump({{"argv": sys.argv[1:], "env": dict(os.environ)}}, open({str(dump)!r}, "w"))\n')
    op = script_op("py_1", script, "runner_target", interpreter="python",
                   opt={"msg": "$HOME `id` \"q\" 'sq' a b"}, desc={"msg": "text"},
                   arg=[{"type": "text", "value": "x y"}])
    params = {"runFlow": [{"groupNo": 3, "phases": [{"phaseName": "p", "phaseType": "runner_target", "operations": [op]}]}]}
    rt, outcome = jobs.run("91", params, nodes_lines(1))
    assert outcome.status == "succeed"
    data = json.loads(dump.read_text())
    assert data["argv"] == ["--msg", "$HOME `id` \"q\" 'sq' a b", "x y"]
    env = data["env"]
    triple = "10.1.0.1-22-101"
    assert env["OUTPUT_PATH"] == str(rt.jobdir.root / f"output-op/{triple}/py_1.json")
    assert env["NODE_OUTPUT_PATH"] == str(rt.jobdir.root / f"output/{triple}.json")
    assert env["AUTOEXEC_JOBID"] == "91" and env["GROUP_NO"] == "3" and env["AUTOEXEC_PHASE_NAME"] == "p"
    assert env["NODE_HOST"] == "10.1.0.1" and env["TERM"] == "dumb"
    node = json.loads(env["AUTOEXEC_NODE"])
    assert node["host"] == "10.1.0.1" and node["password"] == "pw"  # as the original gave runner-side tools
    assert "pw" not in " ".join(data["argv"])
    logs = "".join(p.read_text() for p in rt.jobdir.root.rglob("*") if p.is_file() and p.suffix in (".txt", ".json")
                   and p.name not in ("nodes.json", "env.json"))
    assert '"pw"' not in logs and "password" not in logs


def test_missing_plugin_fails_the_node_with_a_clear_line(jobs: JobFiles) -> None:
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner", "operations": [
        {"opId": "nope_1", "opName": "nosuch/tool", "opType": "runner"}]}]}]}
    rt, outcome = jobs.run("92", params)
    assert outcome.status == "failed"
    assert "ERROR: Plugin not exists nosuch/tool" in rt.jobdir.node_log("p", "local-0-0").read_text()


def test_descriptor_alone_in_home_hides_the_bundled_executable(jobs: JobFiles) -> None:
    """The first plugin dir holding any file of a tool provides all of it: the bundled
    ``basic/echo`` does not run under a descriptor written for another copy of it."""
    (jobs.home / "plugins" / "local" / "basic").mkdir(parents=True)
    (jobs.home / "plugins" / "local" / "basic" / "echo.json").write_text('{"opType": "runner"}')
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner", "operations": [
        {"opId": "echo_1", "opName": "basic/echo", "opType": "runner"}]}]}]}
    rt, outcome = jobs.run("93", params)
    assert outcome.status == "failed"
    assert (f"ERROR: Plugin not exists basic/echo (only its descriptor {jobs.home / 'plugins/local/basic/echo.json'}, "
            "which hides later plugin dirs; looked in") in rt.jobdir.node_log("p", "local-0-0").read_text()
