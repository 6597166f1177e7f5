"""Operation semantics inside real jobs: option types, references, outputs across phases,
secrets, conditions and native ops (issue 3)."""
from __future__ import annotations

import json

import pytest

from autoexec.conf.secrets import encrypt_secret
from tests.fixtures_core import JobFiles, nodes_lines, script_op

KEY = "unit-test-password-key"
DUMP_ARGV = 'import json, os, sys\njson.dump(sys.argv[1:], open(os.environ["OUTPUT_PATH"] + ".argv", "w"))\n'


@pytest.fixture
def keyed(jobs: JobFiles) -> JobFiles:
    conf = jobs.home / "conf"
    conf.mkdir()
    (conf / "config.ini").write_text(f"[server]\npassword.key = {KEY}\n")
    return jobs


def _phase(name: str, ops: list[dict], phase_type: str = "runner_target") -> dict:
    return {"phaseName": name, "phaseType": phase_type, "operations": ops}


def _job(*phases: dict, **top: object) -> dict:
    return {"runFlow": [{"groupNo": i, "phases": [p]} for i, p in enumerate(phases)], **top}


def test_every_option_type_reaches_the_tool_as_argv(keyed: JobFiles) -> None:
    secret = encrypt_secret("s3cr3t pass", KEY, "{RC4}")
    opt = {"t": "plain $HOME `id`", "area": "line1\nline2", "pw": secret, "js": {"a": [1, "x"]},
           "sel": "b", "multi": ["a", "b"], "on": True, "off": False, "day": "2026-11-25", "empty": "",
           "nd": [{"ip": "1.2.3.4"}]}
    desc = {"t": "text", "area": "textarea", "pw": "password", "js": "json", "sel": "select", "multi": "multiselect",
            "on": "switch", "off": "switch", "day": "date", "empty": "text", "nd": "node"}
    op = script_op("dump_1", DUMP_ARGV, "runner", interpreter="python", opt=opt, desc=desc,
                   arg=[{"type": "text", "value": "free arg"}])
    rt, outcome = keyed.run("201", _job(_phase("p", [op], "runner")))
    assert outcome.status == "succeed", rt.jobdir.node_log("p", "local-0-0").read_text()
    argv = json.loads((rt.jobdir.op_output("local-0-0", "dump_1").parent / "dump_1.json.argv").read_text())
    assert argv == ["-t", "plain $HOME `id`", "--area", "line1\\nline2", "--pw", "s3cr3t pass",
                    "--js", '{"a": [1, "x"]}', "--sel", "b", "--multi", '["a", "b"]', "--on",
                    "--day", "2026-11-25", "--nd", '[{"ip": "1.2.3.4"}]', "free arg"]
    log = rt.jobdir.node_log("p", "local-0-0").read_text()
    assert "s3cr3t" not in log and "******" in log
    inputs = json.loads(rt.jobdir.node_input("local-0-0").read_text())["dump_1"]
    assert inputs["options"]["pw"] == "******"


def test_references_resolve_in_the_documented_order_and_outputs_flow_across_phases(keyed: JobFiles) -> None:
    make = 'echo "{\\"ver\\": \\"1.$NODE_NAME\\", \\"n\\": 3}" > "$OUTPUT_PATH"\n'
    runner_make = 'echo \'{"build": "b-77"}\' > "$OUTPUT_PATH"\n'
    use = 'echo "{\\"seen\\": \\"$1|$2|$3|$4|$5|$6\\"}" > "$OUTPUT_PATH"\n'
    params = _job(
        _phase("build", [script_op("rmake_1", runner_make, "runner", output={"build": {"type": "text"}})], "runner"),
        _phase("first", [script_op("make_1", make, "runner_target", output={"ver": {"type": "text"},
                                                                           "missing": {"type": "text", "defaultValue": "dflt"}})]),
        _phase("second", [script_op("use_1", use, "runner_target", output={"seen": {"type": "text"}}, arg=[
            {"type": "text", "value": "${first.make_1.ver}"}, {"type": "text", "value": "${make_1.missing}"},
            {"type": "text", "value": "${build.rmake_1.build}"}, {"type": "text", "value": "${release}"},
            {"type": "text", "value": "${region}"}, {"type": "text", "value": "${NODE_NAME}"}])]),
        _phase("third", [script_op("again_1", 'echo "{\\"v\\": \\"$1\\"}" > "$OUTPUT_PATH"\n', "runner_target",
                                   output={"v": {"type": "text"}}, arg=[{"type": "text", "value": "${second.use_1.seen}"}])]),
        opt={"release": "r9"}, globalOpt={"region": "eu", "release": "ignored-global"})
    rt, outcome = keyed.run("202", params, nodes_lines(2))
    assert outcome.status == "succeed", rt.jobdir.console_log.read_text()
    out = json.loads(rt.jobdir.node_output("10.1.0.2-22-102").read_text())
    assert out["make_1"] == {"ver": "1.n2", "n": 3, "missing": "dflt"}
    assert out["use_1"] == {"seen": "1.n2|dflt|b-77|r9|eu|n2"}
    assert out["again_1"] == {"v": "1.n2|dflt|b-77|r9|eu|n2"}


def test_unresolvable_reference_fails_only_that_op_and_names_the_reference(keyed: JobFiles) -> None:
    op = script_op("use_1", "echo never\n", "runner_target", arg=[{"type": "text", "value": "${nophase.nosuch.key}"}])
    rt, outcome = keyed.run("203", _job(_phase("p", [op])), nodes_lines(1))
    assert outcome.status == "failed"
    log = rt.jobdir.node_log("p", "10.1.0.1-22-101").read_text()
    assert "Can not resolve param ${nophase.nosuch.key}" in log and "never" not in log


def test_passwords_never_leak_into_files_the_job_writes(keyed: JobFiles) -> None:
    plain = "Top-Secret-Pw-42"
    secret = encrypt_secret(plain, KEY, "{RC4}")
    op = script_op("use_1", 'echo "got a password of length ${#2}"\n', "runner_target",
                   opt={"pw": secret}, desc={"pw": "password"})
    nodes = nodes_lines(2, password=encrypt_secret(plain, KEY, "{ENCRYPTED}"))
    rt, outcome = keyed.run("204", _job(_phase("p", [op])), nodes)
    assert outcome.status == "succeed"
    assert "got a password of length 16" in rt.jobdir.node_log("p", "10.1.0.1-22-101").read_text()
    for path in rt.jobdir.root.rglob("*"):
        if path.is_file():
            assert plain not in path.read_text(errors="replace"), path


def test_if_block_branches_per_node_and_bad_condition_fails_clearly(keyed: JobFiles) -> None:
    branch = {"opId": "if_1", "opName": "native/IF-Block", "opType": "native",
              "condition": '$NODE_NAME == "n1" or $NODE_NAME startswith "x"',
              "if": [script_op("yes_1", 'echo "{\\"b\\": \\"if\\"}" > "$OUTPUT_PATH"\n', "runner_target",
                               output={"b": {"type": "text"}})],
              "else": [script_op("no_1", 'echo "{\\"b\\": \\"else\\"}" > "$OUTPUT_PATH"\n', "runner_target",
                                 output={"b": {"type": "text"}})]}
    rt, outcome = keyed.run("205", _job(_phase("p", [branch])), nodes_lines(2))
    assert outcome.status == "succeed"
    assert json.loads(rt.jobdir.node_output("10.1.0.1-22-101").read_text())["yes_1"] == {"b": "if"}
    assert json.loads(rt.jobdir.node_output("10.1.0.2-22-102").read_text())["no_1"] == {"b": "else"}
    bad = dict(branch, condition='$NODE_NAME == "n1" and and')
    rt, outcome = keyed.run("206", _job(_phase("p", [bad])), nodes_lines(1))
    assert outcome.status == "failed"
    assert "Condition syntax error" in rt.jobdir.node_log("p", "10.1.0.1-22-101").read_text()


def test_native_setenv_failkeys_and_extractprestepstatus(keyed: JobFiles) -> None:
    ops = [
        {"opId": "set_1", "opName": "native/setenv", "opType": "native", "opt": {"name": "COLOR", "value": "blue",
                                                                                  "scope": "node"},
         "desc": {"name": "text", "value": "text", "scope": "select"}},
        script_op("show_1", 'echo "color is $1"\n', "runner_target", arg=[{"type": "text", "value": "${COLOR}"}]),
        {"opId": "keys_1", "opName": "native/failkeys", "opType": "native", "opt": {"operator": "or"},
         "desc": {"operator": "select"}, "arg": [{"type": "text", "value": "FATAL"}]},
        script_op("ok_1", 'echo "all good"\n', "runner_target"),
        script_op("bad_1", 'echo "FATAL: disk gone"\nexit 0\n', "runner_target", failIgnore=1),
        {"opId": "pre_1", "opName": "native/extractprestepstatus", "opType": "native",
         "opt": {"envname": "PREV", "scope": "node"}, "desc": {"envname": "text", "scope": "select"}},
    ]
    rt, outcome = keyed.run("207", _job(_phase("p", ops)), nodes_lines(1))
    log = rt.jobdir.node_log("p", "10.1.0.1-22-101").read_text()
    assert "color is blue" in log
    status = json.loads(rt.jobdir.node_status("p", "10.1.0.1-22-101").read_text())
    assert status["ok_1"] == "succeed" and status["bad_1"] == "failed" and status["status"] == "ignored"
    output = json.loads(rt.jobdir.node_output("10.1.0.1-22-101").read_text())
    assert output["nodeEnv"] == {"COLOR": "blue", "PREV": "ignored"}
    assert outcome.status == "succeed"


def test_native_failjob_fails_the_node(keyed: JobFiles) -> None:
    op = {"opId": "fj_1", "opName": "native/failjob", "opType": "native", "arg": [{"type": "text", "value": "stop here"}]}
    rt, outcome = keyed.run("208", _job(_phase("p", [op])), nodes_lines(1))
    assert outcome.status == "failed"
    assert "ERROR: stop here" in rt.jobdir.node_log("p", "10.1.0.1-22-101").read_text()


def test_builtin_local_tools_run_from_the_bundled_plugins(keyed: JobFiles) -> None:
    ops = [{"opId": "cmd_1", "opName": "basic/getcmdout", "opType": "runner",
            "opt": {"cmd": "echo hello-from-getcmdout"}, "desc": {"cmd": "text"}, "output": {"result": {"type": "text"}}}]
    rt, outcome = keyed.run("209", _job(_phase("p", ops, "runner")))
    assert outcome.status == "succeed", rt.jobdir.node_log("p", "local-0-0").read_text()
    out = json.loads(rt.jobdir.node_output("local-0-0").read_text())
    assert "hello-from-getcmdout" in json.dumps(out["cmd_1"])


def test_mongodb_mirror_holds_status_and_outputs_and_is_the_fallback(keyed: JobFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    mongomock = pytest.importorskip("mongomock")
    from autoexec.load import loader
    from autoexec.jobdir.mongo import MongoStore

    client = mongomock.MongoClient()
    monkeypatch.setattr(loader, "_open_mirror", lambda cfg, console: MongoStore(client, "autoexec"))
    op = script_op("make_1", 'echo \'{"v": "x"}\' > "$OUTPUT_PATH"\n', "runner_target", output={"v": {"type": "text"}})
    rt, outcome = keyed.run("210", _job(_phase("p", [op])), nodes_lines(1))
    rt.mirror.flush(5)
    db = client["autoexec"]
    out_doc = db["_node_output"].find_one({"jobId": "210", "resourceId": 101})
    assert out_doc["data"]["make_1"] == {"v": "x"} and out_doc["host"] == "10.1.0.1"
    st_doc = db["_node_status"].find_one({"jobId": "210", "phase": "p", "resourceId": 101})
    assert st_doc["data"]["status"] == "succeed"
    # Another runner ran the phase: no local files, Mongo has them -> skipped and outputs reused.
    rt.jobdir.node_status("p", "10.1.0.1-22-101").unlink()
    rt.jobdir.node_output("10.1.0.1-22-101").unlink()
    use = script_op("use_1", 'echo "{\\"u\\": \\"$1\\"}" > "$OUTPUT_PATH"\n', "runner_target",
                    output={"u": {"type": "text"}}, arg=[{"type": "text", "value": "${p.make_1.v}"}])
    params = _job(_phase("p", [op]), _phase("q", [use]))
    rt, outcome = keyed.run("210", params, nodes_lines(1))
    assert outcome.status == "succeed"
    assert "had been executed, skip" in rt.jobdir.console_log.read_text()
    assert json.loads(rt.jobdir.node_output("10.1.0.1-22-101").read_text())["use_1"] == {"u": "x"}


def test_file_options_link_into_the_job_and_filepath_outputs_are_collected(keyed: JobFiles) -> None:
    data_file = keyed.tmp / "payload.txt"
    data_file.write_text("payload-content\n")
    produced = keyed.tmp / "report.csv"
    script = (f'echo "file option: $2"\ncat "$2"\nprintf "a,b\\n" > {produced}\n'
              f'echo "{{\\"report\\": \\"{produced}\\"}}" > "$OUTPUT_PATH"\n')
    op = script_op("f_1", script, "runner", opt={"data": [str(data_file)]}, desc={"data": "file"},
                   output={"report": {"type": "filepath"}})
    rt, outcome = keyed.run("211", _job(_phase("p", [op], "runner")))
    log = rt.jobdir.node_log("p", "local-0-0").read_text()
    assert outcome.status == "succeed", log
    assert "file option: file/payload.txt" in log and "payload-content" in log
    assert (rt.jobdir.file_dir / "payload.txt").read_text() == "payload-content\n"
    out = json.loads(rt.jobdir.node_output("local-0-0").read_text())["f_1"]
    assert out["report"] == "output-op/local-0-0/f_1/report.csv"
    assert (rt.jobdir.root / out["report"]).read_text() == "a,b\n"
