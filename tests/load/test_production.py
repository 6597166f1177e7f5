"""Production mode against a real HTTP console on loopback: inputs downloaded, every callback in the
console's order, nothing lost while the console is down or the runner dies (issue 6)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from autoexec.cli.command import main
from autoexec.engine.jobloop import JobOutcome
from autoexec.load.loader import JobRequest, release_runtime
from autoexec.load.production import build_job_runtime
from autoexec.job.runtime import JobRuntime
from tests.fake_console import TOKEN, USER, FakeConsole, Script
from tests.fixtures_core import nodes_lines, run_runtime, script_op

PASS = {"runnerId": 1, "callerJob": "c-9"}


@pytest.fixture
def console(ae_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConsole]:
    fake = FakeConsole().start()
    conf = ae_home / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "config.ini").write_text(f"[server]\nserver.baseurl = {fake.url}\nserver.username = {USER}\n"
                                     f"server.password = {TOKEN}\n", encoding="utf-8")
    monkeypatch.setenv("AUTOEXEC_CONSOLE_RETRIES", "1")
    monkeypatch.delenv("PASSTHROUGH_ENV", raising=False)
    try:
        yield fake
    finally:
        fake.stop()


def run(job_id: str, flush: float = 10, **req: Any) -> tuple[JobRuntime, JobOutcome, bool]:
    rt = build_job_runtime(JobRequest(job_id=job_id, dev_mode=False, pass_through_env=dict(PASS), **req))
    outcome = run_runtime(rt)
    delivered = release_runtime(rt, flush)
    return rt, outcome, delivered


def per_node(op_id: str, script: str) -> dict[str, Any]:
    """A runner_target op: runs on the runner once per target node."""
    return script_op(op_id, script, op_type="runner_target")


def one_phase_group(group_no: int, phase: str, ops: list[dict[str, Any]], phase_type: str = "runner") -> dict:
    return {"groupNo": group_no, "execStrategy": "oneShot",
            "phases": [{"phaseName": phase, "phaseType": phase_type, "operations": ops}]}


def serve_job(fake: FakeConsole, job_id: str, params: dict[str, Any], node_count: int = 2) -> None:
    fake.params[job_id] = params
    fake.set_nodes(job_id, nodes_lines(node_count))
    for group in params["runFlow"]:
        for phase in group["phases"]:
            fake.set_nodes(job_id, nodes_lines(node_count), node_from="phase", phase=phase["phaseName"])


def sequence(fake: FakeConsole) -> list[tuple[str, ...]]:
    """Callbacks as (api, phase, node, status) in arrival order."""
    out = []
    for rec in fake.callbacks():
        body = rec.body or {}
        if rec.api in ("updateNodeStatus", "updatePhaseStatus", "fireNextGroup", "updateJobStatus"):
            node = str(body.get("resourceId", "")) if rec.api == "updateNodeStatus" else ""
            out.append((rec.api, body.get("phase", ""), node, str(body.get("status", body.get("groupNo", "")))))
    return out


def test_full_job_downloads_inputs_and_reports_in_console_order(jobs: Any, console: FakeConsole) -> None:
    console.scripts["7"] = Script(b'. "$(dirname "$0")/greet.sh"\ngreet "$@"\n'
                                  b'[ "$(cat "$(echo "$2" | sed \'s/^\\["//; s/"\\]$//\')")" = "pkg-v1" ] || exit 4\n'
                                  b'[ "$4" = "root/s3cret" ] || exit 5\n',
                                  version_id="31", name="build", use_libs=("8",))
    console.scripts["8"] = Script(b'greet() { echo "hello from lib: $1"; }\n', version_id="40", name="greet",
                                  is_lib=True)
    console.set_file("55", "pkg.txt", b"pkg-v1")
    console.responses["getAccount"] = {"password": "s3cret"}
    build = {"opId": "custom_7_build", "opName": "build", "opType": "runner", "isScript": 1, "scriptId": 7,
             "interpreter": "bash", "opt": {"pkg": "[55]", "acct": "root/3/ssh"},
             "desc": {"pkg": "file", "acct": "account"}}
    params = {"jobId": 501, "tenant": "acme", "runFlow": [
        one_phase_group(0, "build", [build]),
        one_phase_group(1, "check", [script_op("check_1", "echo checking $NODE_HOST", op_type="runner_target")],
                        phase_type="runner_target")]}
    serve_job(console, "501", params)

    rt, outcome, delivered = run("501", first_fire=True)

    assert outcome.status == "succeed", rt.jobdir.console_log.read_text()
    assert delivered
    assert json.loads(rt.jobdir.params.read_text())["tenant"] == "acme"
    assert (rt.jobdir.root / "script" / "31.build.sh").exists() and (rt.jobdir.root / "script" / "greet.sh").exists()
    assert "hello from lib" in rt.jobdir.node_log("build", "local-0-0").read_text()
    gets = [r.api for r in console.log if r.method == "GET" or r.api in ("getParams", "getAccount")]
    assert gets[:3] == ["getParams", "getNodes", "getMongoDBConf"]
    assert {"fetchScript", "fetchFile", "getAccount"} <= set(gets)
    seq = sequence(console)
    assert seq[:3] == [("updatePhaseStatus", "build", "", "running"),
                       ("updateNodeStatus", "build", "0", "running"),
                       ("updateNodeStatus", "build", "0", "succeed")]
    assert seq[3] == ("updatePhaseStatus", "build", "", "succeed")
    check = seq[4:-1]
    assert check[0] == ("updatePhaseStatus", "check", "", "running")
    assert check[-1] == ("updatePhaseStatus", "check", "", "succeed")
    for node in ("101", "102"):
        assert [s for api, _, n, s in check if n == node] == ["running", "succeed"]
    assert seq[-1] == ("fireNextGroup", "", "", "1")
    for rec in console.callbacks():
        if rec.api in ("getParams",):
            continue  # params (and so their tenant) are not known yet
        assert rec.tenant == "acme"
        if rec.api != "getAccount":
            assert rec.body["passThroughEnv"] == PASS and str(rec.body["jobId"]) == "501"
    assert "s3cret" not in "".join(p.read_text(errors="replace") for p in rt.jobdir.root.rglob("*")
                                   if p.is_file() and not {"outbox", "script"} & set(p.parts))


def test_second_run_gets_204s_and_skips_what_succeeded(jobs: Any, console: FakeConsole) -> None:
    params = {"jobId": 502, "runFlow": [one_phase_group(0, "check", [per_node("c_1", "echo hi")],
                                                        phase_type="runner_target")]}
    serve_job(console, "502", params)
    run("502", first_fire=True)
    console.log.clear()
    rt, outcome, _ = run("502")
    assert outcome.status == "succeed"
    assert [r.api for r in console.log if r.api == "getParams"] == []  # params.json kept locally
    assert console.callbacks("updateNodeStatus") == []  # status unchanged: nothing to report, as the original skips it
    final = console.callbacks("updatePhaseStatus")[-1].body
    assert (final["status"], final["skipNodeCount"], final["sucNodeCount"]) == ("succeed", 2, 0)
    assert "succeed" in rt.jobdir.node_status("check", "10.1.0.1-22-101").read_text()


def test_console_down_mid_job_loses_nothing(jobs: Any, console: FakeConsole) -> None:
    params = {"jobId": 503, "runNode": [json.loads(line) for line in nodes_lines(3).splitlines()[1:]],
              "runFlow": [one_phase_group(0, "a", [per_node("a_1", "sleep 0.3")], "runner_target"),
                          one_phase_group(1, "b", [per_node("b_1", "echo b")], "runner_target")]}
    console.params["503"] = params
    rt = build_job_runtime(JobRequest(job_id="503", dev_mode=False, first_fire=True, pass_through_env=dict(PASS)))
    console.set_mode("down")  # inputs are in; from now on every callback fails to connect
    outcome = run_runtime(rt)
    assert outcome.status == "succeed"  # the job never waited for the console
    assert rt.notifier.flush(0.2) is False
    console.set_mode("up")
    assert release_runtime(rt, 20)
    seq = sequence(console)
    assert len([s for s in seq if s[0] == "updateNodeStatus"]) == 12
    assert seq[0] == ("updatePhaseStatus", "a", "", "running") and seq[-1][0] == "fireNextGroup"
    queue = [json.loads(x)["seq"] for x in (rt.jobdir.root / "outbox/queue.jsonl").read_text().splitlines()]
    assert queue == sorted(queue) and len(queue) == len(seq)


def test_callbacks_left_by_a_dead_runner_are_sent_by_the_next_run(jobs: Any, console: FakeConsole) -> None:
    params = {"jobId": 504, "runNode": [json.loads(line) for line in nodes_lines(2).splitlines()[1:]],
              "runFlow": [one_phase_group(0, "a", [per_node("a_1", "echo a")], "runner_target")]}
    console.params["504"] = params
    rt = build_job_runtime(JobRequest(job_id="504", dev_mode=False, first_fire=True, pass_through_env=dict(PASS)))
    console.set_mode("5xx", code=503)
    run_runtime(rt)
    rt.notifier.close()  # the process "dies": nothing flushed
    assert sequence(console) == []
    console.set_mode("up")
    _, outcome, delivered = run("504", force=True)
    assert outcome.status == "succeed" and delivered
    statuses = [(r.body.get("phase"), r.body.get("status")) for r in console.callbacks("updatePhaseStatus")]
    assert statuses == [("a", "running"), ("a", "succeed")] * 2  # first run's, then the re-run's
    assert len(console.callbacks("fireNextGroup")) == 2


def test_has_fail_node_from_the_console_stops_the_job(jobs: Any, console: FakeConsole) -> None:
    console.responses["updateNodeStatus"] = {"hasFailNode": 1}
    params = {"jobId": 505, "runFlow": [one_phase_group(0, "a", [per_node("a_1", "sleep 0.5")], "runner_target"),
                                        one_phase_group(1, "b", [per_node("b_1", "echo b")], "runner_target")]}
    serve_job(console, "505", params)
    rt, outcome, _ = run("505", first_fire=True)
    assert outcome.status == "failed"
    assert 1 not in outcome.groups
    assert console.callbacks("fireNextGroup") == []


def test_bad_token_is_one_line_and_records_nothing(jobs: Any, console: FakeConsole, ae_home: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    console.users = {USER: "0" * 32}
    console.params["506"] = {"jobId": 506, "runFlow": []}
    assert main(["--jobid", "506", "--firstfire"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "authentication" in err and TOKEN not in err
    job_dir = ae_home / "data/job/506"
    assert not (job_dir / "params.json").exists() and not (job_dir / "status").exists()


def test_failed_nodes_download_keeps_the_previous_copy(jobs: Any, console: FakeConsole) -> None:
    params = {"jobId": 507, "runFlow": [one_phase_group(0, "a", [per_node("a_1", "echo a")], "runner_target")]}
    serve_job(console, "507", params)
    rt, outcome, _ = run("507", first_fire=True)
    before = rt.jobdir.phase_nodes("a").read_bytes()
    console.break_downloads = True
    console.set_nodes("507", nodes_lines(5), node_from="phase", phase="a")
    rt, outcome, _ = run("507")
    assert rt.jobdir.phase_nodes("a").read_bytes() == before  # never a half file
    assert "not refreshed" in rt.jobdir.console_log.read_text()
    assert outcome.status == "succeed"


def test_abort_without_a_process_tells_the_console(jobs: Any, console: FakeConsole,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--jobid", "508", "--abort", "--passthroughenv", json.dumps(PASS)]) == 2
    [rec] = console.callbacks("updateJobStatus")
    assert rec.body["status"] == "aborted" and rec.body["passThroughEnv"] == PASS


def test_devmode_sends_nothing(jobs: Any, console: FakeConsole) -> None:
    rt, outcome = jobs.run("509", {"jobId": 509, "runFlow": [one_phase_group(0, "a", [per_node("a_1", "echo a")], "runner_target")]},
                           nodes_lines(1))
    assert outcome.status == "succeed"
    assert console.attempts == []


def test_register_from_the_command_line_exits_0_and_cleans_up(jobs: Any, console: FakeConsole,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--register", "tenant-x"]) == 0
    registered = console.callbacks("registerTool")
    assert registered and all(r.tenant == "tenant-x" for r in registered)
    assert {r.body["opType"] for r in registered} <= {"runner", "runner_target", "target"}
    [clean] = console.callbacks("cleanNativeTools")
    assert clean.body["importTime"] == registered[0].body["importTime"]


def test_exported_env_and_global_params_reach_the_console(jobs: Any, console: FakeConsole) -> None:
    ops = [{"opId": "setenv_1", "opName": "native/setenv", "opType": "native",
            "opt": {"name": "BUILD_ID", "value": "b-77", "scope": "global"}, "desc": {}},
           {"opId": "gp_1", "opName": "native/updategparam", "opType": "native",
            "opt": {"name": "lastBuild", "value": "b-77"}, "desc": {}}]
    params = {"jobId": 510, "runNode": [json.loads(line) for line in nodes_lines(1).splitlines()[1:]],
              "runFlow": [one_phase_group(0, "env", ops)]}
    console.params["510"] = params
    rt, outcome, delivered = run("510", first_fire=True)
    assert outcome.status == "succeed" and delivered, rt.jobdir.console_log.read_text()
    [env] = console.callbacks("exportJobEnv")
    assert (env.body["envName"], env.body["envValue"], env.body["passThroughEnv"]) == ("BUILD_ID", "b-77", PASS)
    [gp] = console.callbacks("updateGlobalParam")
    assert (gp.body["key"], gp.body["defaultValue"]) == ("lastBuild", "b-77")


def test_gray_scale_group_downloads_its_nodes_once_per_group(jobs: Any, console: FakeConsole) -> None:
    params = {"jobId": 511, "runFlow": [{"groupNo": 0, "execStrategy": "grayScale", "roundCount": 2, "phases": [
        {"phaseName": "g", "phaseType": "runner_target", "operations": [per_node("g_1", "echo $NODE_HOST")]}]}]}
    console.params["511"] = params
    console.set_nodes("511", nodes_lines(1))
    console.set_nodes("511", nodes_lines(4), node_from="group", group_no=0)
    rt, outcome, _ = run("511", first_fire=True)
    assert outcome.status == "succeed", rt.jobdir.console_log.read_text()
    froms = [(r.query["nodeFrom"], r.query.get("groupNo")) for r in console.log if r.api == "getNodes"]
    assert froms == [("job", None), ("group", "0")]
    assert rt.jobdir.group_nodes(0).exists()
    done = [r.body["resourceId"] for r in console.callbacks("updateNodeStatus") if r.body["status"] == "succeed"]
    assert sorted(done) == [101, 102, 103, 104]  # the group's nodes, not the job-level file's one


LOCK_TOOL = ('import json, os, socket, tempfile\n'
             'me = os.path.join(tempfile.mkdtemp(), "tool.sock")\n'
             's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(me); s.settimeout(10)\n'
             'params = {"pid": os.getpid(), "lockOwner": "1/2", "lockTarget": "workspace", "lockMode": "write",\n'
             '          "action": "lock"}\n'
             's.sendto(json.dumps({"action": "globalLock", "lockParams": params}).encode(), os.environ["AUTOEXEC_JOB_SOCK"])\n'
             'reply = json.loads(s.recv(8192))\n'
             'print("lock reply", reply)\n'
             'raise SystemExit(0 if reply.get("lockId") == 5 else 3)\n')


def test_tool_takes_a_global_lock_released_at_job_end(jobs: Any, console: FakeConsole) -> None:
    console.responses["globalLock"] = lambda body: {"lockId": 5, "wait": 0} if body.get("action") == "lock" else {}
    params = {"jobId": 512, "runNode": [json.loads(line) for line in nodes_lines(1).splitlines()[1:]],
              "runFlow": [one_phase_group(0, "build", [script_op("lock_1", LOCK_TOOL, interpreter="python")])]}
    console.params["512"] = params
    rt, outcome, _ = run("512", first_fire=True)
    assert outcome.status == "succeed", rt.jobdir.node_log("build", "local-0-0").read_text()
    calls = [(r.body.get("action"), r.body.get("jobId"), r.body.get("lockId")) for r in console.callbacks("globalLock")]
    assert calls == [("lock", "512", None), ("unlock", None, 5)]


def test_release_job_gets_deploy_ids_from_the_console(jobs: Any, console: FakeConsole, ae_home: Path) -> None:
    console.responses["getDeployIdPath"] = {"sysId": 11, "moduleId": 22, "envId": 33}
    console.responses["getDeployRunnerGroup"] = {"1": "runner-a"}
    params = {"jobId": 513, "environment": {"DEPLOY_PATH": "shop/api/prod", "VERSION": "1.2"},
              "runNode": [json.loads(line) for line in nodes_lines(1).splitlines()[1:]],
              "runFlow": [one_phase_group(0, "show", [script_op("show_1", 'echo "dist=$APP_DIST ids=$ID_PATH"')])]}
    console.params["513"] = params
    rt, outcome, _ = run("513", first_fire=True)
    log = rt.jobdir.node_log("show", "local-0-0").read_text()
    assert outcome.status == "succeed", log
    assert f"dist={ae_home}/data/verdata/11/22/artifact/1.2/env/33/app ids=11/22/33" in log
    [ask] = console.callbacks("getDeployIdPath")
    assert (ask.body["sysName"], ask.body["moduleName"], ask.body["envName"]) == ("shop", "api", "prod")


CUSTOM_SCRIPT_OP = {"opId": "custom_9_nine", "opName": "nine", "opType": "runner", "isScript": 1, "scriptId": 9,
                    "interpreter": "bash"}
"""A custom script op the console serves as script 9."""


def test_devmode_downloads_custom_scripts_from_the_configured_console(jobs: Any, console: FakeConsole) -> None:
    console.scripts["9"] = Script(b'echo "script nine ran"\n', version_id="90", name="nine")
    params = {"jobId": 503, "runFlow": [one_phase_group(0, "p", [CUSTOM_SCRIPT_OP])]}
    rt = build_job_runtime(JobRequest(job_id="503", dev_mode=True, params=params, nodes=nodes_lines(1)))
    outcome = run_runtime(rt)
    release_runtime(rt, 5)
    assert outcome.status == "succeed", rt.jobdir.node_log("p", "local-0-0").read_text()
    assert "script nine ran" in rt.jobdir.node_log("p", "local-0-0").read_text()
    assert [r.api for r in console.log if r.api == "fetchScript"] == ["fetchScript"]
    assert [r.api for r in console.callbacks() if r.api != "fetchScript"] == []  # devmode: no callbacks


def test_devmode_without_console_names_the_op_and_the_setting(jobs: Any, ae_home: Path) -> None:
    params = {"jobId": 504, "runFlow": [one_phase_group(0, "p", [CUSTOM_SCRIPT_OP])]}
    rt = build_job_runtime(JobRequest(job_id="504", dev_mode=True, params=params, nodes=nodes_lines(1)))
    outcome = run_runtime(rt)
    release_runtime(rt, 1)
    log = rt.jobdir.node_log("p", "local-0-0").read_text()
    assert outcome.status == "failed"
    assert "operation custom_9_nine" in log and "server.baseurl" in log and "scriptId" in log
