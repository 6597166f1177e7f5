"""The Python tool library, function by function: AutoExecUtils (runner side and target side),
ServerAdapter and AutoExecError, loaded the way tools load them (by name from their directories),
against real files, a real datagram socket and the loopback fake console."""
from __future__ import annotations

import importlib
import io
import json
import os
import socket
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Iterator

import pytest

from autoexec.conf.config import BUNDLED_PLUGINS, PACKAGE_DIR
from autoexec.conf.secrets import MASTER_KEY, encrypt_secret
from tests.fake_console import TOKEN, USER, FakeConsole

LOCAL_LIB = BUNDLED_PLUGINS / "local" / "lib"
REMOTE_LIB = BUNDLED_PLUGINS / "remote" / "lib"
TOOLLIB = PACKAGE_DIR / "toollib"
TOOL_MODULES = ("AutoExecUtils", "ServerAdapter", "AutoExecError")
PASS_KEY = "r3MQiqvyDaEocb4zl8YJ3ebbZcpKoo7E"
TOOL_ENV = ("OUTPUT_PATH", "LIVEDATA_PATH", "NODE_OUTPUT_PATH", "OPERATION_ID", "AUTOEXEC_NODE",
            "AUTOEXEC_NODES_PATH", "AUTOEXEC_JOB_SOCK", "AUTOEXEC_PHASE_NAME", "AUTOEXEC_HOME",
            "AUTOEXEC_JOBID", "AUTOEXEC_TENANT", "AUTOEXEC_SERVER_BASEURL", "AUTOEXEC_SERVER_USERNAME",
            "AUTOEXEC_SERVER_PASSWORD", "AUTOEXEC_DB_URL", "AUTOEXEC_DB_NAME", "AUTOEXEC_DB_USERNAME",
            "AUTOEXEC_DB_PASSWORD", "PASSTHROUGH_ENV")

# The public names tools of the original call (functions, the Context class and module constants).
ORIGINAL_API = (
    "Context", "PYTHON_VER", "AUTOEXEC_CONTEXT", "setEnv", "getAutoexecContext", "saveOutput", "saveLiveData",
    "getDB", "getMyNode", "getNode", "loadNodeOutput", "getOpPreOutput", "informNodeWaitInput", "setJobEnv",
    "getNodes", "getNodesArray", "isJson", "handleJsonstr", "getNodePwd", "updateInspectStatus",
    "updateMonitorStatus", "setResourceInspectJobId", "getCmdbCiAttrs", "getAccessEndpointConf", "getScript",
    "getCITxtFilePathList", "uploadFile", "removeUploadedFile", "txtFileInspectSave", "notifyInspectReport",
    "getResourceInfoList", "saveVersionMetrics", "saveVersionCveList", "getJobStatus")


def _load(monkeypatch: pytest.MonkeyPatch, lib: Path) -> types.ModuleType:
    for name in TOOL_MODULES:
        sys.modules.pop(name, None)
    monkeypatch.syspath_prepend(str(TOOLLIB))
    monkeypatch.syspath_prepend(str(lib))
    return importlib.import_module("AutoExecUtils")


@pytest.fixture
def utils(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[types.ModuleType]:
    for var in TOOL_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AUTOEXEC_HOME", str(tmp_path / "home"))
    yield _load(monkeypatch, LOCAL_LIB)
    for name in TOOL_MODULES:
        sys.modules.pop(name, None)


@pytest.fixture
def remote_utils(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    monkeypatch.delenv("OUTPUT_PATH", raising=False)
    yield _load(monkeypatch, REMOTE_LIB)
    sys.modules.pop("AutoExecUtils", None)


@pytest.fixture
def console(utils: types.ModuleType, fake_console: FakeConsole, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> FakeConsole:
    """config.ini as autoexec writes it (secrets ``{ENCRYPTED}``) naming the fake console."""
    conf = tmp_path / "home" / "conf"
    conf.mkdir(parents=True)
    conf.joinpath("config.ini").write_text(
        "[server]\n"
        f"server.baseurl = {fake_console.url}/\n"
        f"server.username = {USER}\n"
        f"server.password = {encrypt_secret(TOKEN, PASS_KEY, '{ENCRYPTED}')}\n"
        f"password.key = {encrypt_secret(PASS_KEY, MASTER_KEY, '{ENCRYPTED}')}\n"
        "[autoexec]\n"
        f"db.password = {encrypt_secret('db-secret', PASS_KEY, '{ENCRYPTED}')}\n")
    monkeypatch.setenv("AUTOEXEC_JOBID", "77")
    monkeypatch.setenv("AUTOEXEC_TENANT", "develop")
    return fake_console


def _body(fake: FakeConsole, api: str) -> Any:
    calls = [r for r in fake.log if r.api == api]
    assert len(calls) == 1, [r.api for r in fake.log]
    assert calls[0].tenant == "develop"
    return calls[0].body


# -- shape -------------------------------------------------------------------------------------------
def test_every_public_name_of_the_original_is_there(utils: types.ModuleType) -> None:
    missing = [name for name in ORIGINAL_API if not hasattr(utils, name)]
    assert missing == []
    assert utils.PYTHON_VER == sys.version_info.major and utils.setEnv() is None


def test_the_library_loads_with_the_standard_library_alone(tmp_path: Path) -> None:
    """A tool may run under any python3: import it in an isolated interpreter without site-packages."""
    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import AutoExecUtils, ServerAdapter; "
            "print(sorted(m for m in ('pymongo', 'requests', 'autoexec', 'Crypto') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(LOCAL_LIB), str(TOOLLIB)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_without_the_runners_pythonpath_the_bundled_core_library_is_found(tmp_path: Path) -> None:
    code = "import sys; sys.path.insert(0, sys.argv[1]); import AutoExecUtils, ServerAdapter; print(ServerAdapter.__file__)"
    out = subprocess.run([sys.executable, "-I", "-c", code, str(LOCAL_LIB)], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).resolve() == (TOOLLIB / "ServerAdapter.py").resolve()


# -- job files -----------------------------------------------------------------------------------------
def test_save_output_and_live_data_write_json_where_the_runner_reads_it(
        utils: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    out, live = tmp_path / "o" / "deep" / "op.json", tmp_path / "live" / "op.json"
    monkeypatch.setenv("OUTPUT_PATH", str(out))
    monkeypatch.setenv("LIVEDATA_PATH", str(live))
    utils.saveOutput({"名字": "值", "n": [1, 2]})
    utils.saveLiveData({"progress": 50})
    assert json.loads(out.read_text(encoding="utf-8")) == {"名字": "值", "n": [1, 2]}
    assert "值" in out.read_text(encoding="utf-8")  # not \u-escaped, as the original wrote it
    assert json.loads(live.read_text()) == {"progress": 50}
    assert sorted(p.name for p in out.parent.iterdir()) == ["op.json"]  # no temp file left
    printed = capsys.readouterr().out
    assert f"INFO: Try save output to {out}." in printed and "INFO: Save output success." in printed


def test_save_output_without_output_path_warns_and_writes_nothing(
        utils: types.ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    os.chdir(tmp_path)
    utils.saveOutput({"a": 1})
    assert "WARN: Could not save output file, because of environ OUTPUT_PATH not defined." in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def _write_nodes(directory: Path) -> None:
    header = json.dumps({"totalCount": 2, "localRunnerId": 1, "jobRunnerIds": [1]})
    a = {"resourceId": 11, "host": "10.0.0.1", "port": 22, "password": "pa"}
    b = {"resourceId": 12, "host": "10.0.0.2", "port": 22, "password": "pb"}
    directory.joinpath("nodes.json").write_text("\n".join([header, json.dumps(a), json.dumps(b)]) + "\n")
    directory.joinpath("nodes-ph-deploy.json").write_text("\n".join([header, json.dumps(b)]) + "\n")
    directory.joinpath("nodes-gp-2.json").write_text("\n".join([header, json.dumps(a)]) + "\n")


def test_nodes_come_from_the_phase_group_or_job_file_without_passwords(
        utils: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_nodes(tmp_path)
    monkeypatch.setenv("AUTOEXEC_NODES_PATH", str(tmp_path / "nodes-ph-deploy.json"))
    assert [n["resourceId"] for n in utils.getNodesArray()] == [11, 12]  # default: the job's nodes.json
    assert [n["resourceId"] for n in utils.getNodesArray("deploy")] == [12]
    assert [n["resourceId"] for n in utils.getNodesArray("other", 2)] == [11]
    assert [n["resourceId"] for n in utils.getNodesArray("other", 9)] == [11, 12]
    assert all("password" not in n for n in utils.getNodesArray())
    nodes = utils.getNodes()
    assert sorted(nodes) == [11, 12] and nodes[12]["host"] == "10.0.0.2" and "password" not in nodes[12]
    # getNode reads the phase's own file and keeps the password, as the original did
    assert utils.getNode(12) == {"resourceId": 12, "host": "10.0.0.2", "port": 22, "password": "pb"}
    assert utils.getNode(11) is None
    (tmp_path / "nodes.json").unlink()
    assert utils.getNodesArray() == [] and utils.getNodesArray("deploy") != []
    monkeypatch.delenv("AUTOEXEC_NODES_PATH")
    assert utils.getNodesArray() == [] and utils.getNodes() == {} and utils.getNode(12) is None


def test_my_node_and_previous_outputs(utils: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert utils.getMyNode() is None
    monkeypatch.setenv("AUTOEXEC_NODE", json.dumps({"resourceId": 5, "host": "h"}))
    assert utils.getMyNode() == {"resourceId": 5, "host": "h"}
    assert utils.loadNodeOutput() == {}
    output = tmp_path / "output" / "h-22-5.json"
    output.parent.mkdir()
    output.write_text(json.dumps({"op_1": {"v": 1}, "op_2": {"v": 2}}))
    monkeypatch.setenv("NODE_OUTPUT_PATH", str(output))
    monkeypatch.setenv("OPERATION_ID", "op_2")
    assert utils.loadNodeOutput() == {"op_1": {"v": 1}, "op_2": {"v": 2}}
    assert utils.getOpPreOutput() == {"v": 2}
    monkeypatch.setenv("OPERATION_ID", "op_3")
    assert utils.getOpPreOutput() is None


# -- job socket --------------------------------------------------------------------------------------
@pytest.fixture
def job_sock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "job1.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(10)
    monkeypatch.setenv("AUTOEXEC_JOB_SOCK", str(path))
    monkeypatch.setenv("AUTOEXEC_PHASE_NAME", "deploy")
    yield server
    server.close()


def _received(server: socket.socket) -> dict[str, Any]:
    return json.loads(server.recv(8192).decode("utf-8"))


def test_job_socket_messages_are_what_the_job_handles(utils: types.ModuleType, job_sock: socket.socket,
                                                      capsys: pytest.CaptureFixture) -> None:
    utils.setJobEnv(False, {"A": "1", "名": "值"})
    assert _received(job_sock) == {"action": "setEnv", "onlyInProcess": False, "items": {"A": "1", "名": "值"}}
    utils.informNodeWaitInput(7, title="T", message="Go?", options=["yes", "no"], role="ops", pipeFile="/p")
    assert _received(job_sock) == {
        "action": "informNodeWaitInput", "phaseName": "deploy", "resourceId": 7,
        "interact": {"title": "T", "opType": "button", "message": "Go?", "options": ["yes", "no"], "role": "ops",
                     "pipeFile": "/p"}}
    utils.informNodeWaitInput(7, clean=1)
    assert _received(job_sock) == {"action": "informNodeWaitInput", "phaseName": "deploy", "resourceId": 7,
                                   "interact": None, "clean": 1}
    assert "INFO: Inform node:7 update status to running success." in capsys.readouterr().out
    utils.setJobEnv(True, {})  # nothing to send
    job_sock.settimeout(0.2)
    with pytest.raises(socket.timeout):
        job_sock.recv(8192)


def test_job_socket_failures(utils: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             job_sock: socket.socket, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(Exception, match="exceeds the job socket limit"):
        utils.setJobEnv(False, {"big": "x" * 9000})
    monkeypatch.setenv("AUTOEXEC_JOB_SOCK", str(tmp_path / "gone.sock"))
    with pytest.raises(Exception, match="ERROR: Set job env failed, socket file .*gone.sock not exist"):
        utils.setJobEnv(False, {"A": "1"})
    utils.informNodeWaitInput(7, options=["a"])  # a waiting tool goes on waiting: only a WARN
    assert "WARN: Inform node:7 update status to waitInput failed, socket file" in capsys.readouterr().out


# -- JSON helpers ------------------------------------------------------------------------------------
def test_json_helpers(utils: types.ModuleType) -> None:
    assert utils.isJson('{"a": 1}') and utils.isJson(io.StringIO("[1, 2]"))
    assert not utils.isJson("{'a': 1}") and not utils.isJson(io.StringIO("nope")) and not utils.isJson(None)
    assert json.loads(utils.handleJsonstr("{'a': None, 'b': 'x'}")) == {"a": "", "b": "x"}
    assert utils.handleJsonstr("{'b': u'x'}") == '{"b": u"x"}'  # as the original: quotes first, so u stays


# -- config and console ------------------------------------------------------------------------------
def test_context_reads_config_ini_and_decrypts_its_secrets(utils: types.ModuleType, console: FakeConsole,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSTHROUGH_ENV", '{"runnerId": 3}')
    ctx = utils.getAutoexecContext()
    assert ctx is utils.getAutoexecContext()  # read once per process
    assert ctx.config["server"]["password.key"] == PASS_KEY
    assert ctx.config["server"]["server.password"] == TOKEN
    assert ctx.config["autoexec"]["db.password"] == "db-secret"
    assert (ctx.tenant, ctx.jobId, ctx.devMode, ctx.passThroughEnv) == ("develop", "77", False, {"runnerId": 3})


def test_environment_overrides_config_ini_as_for_the_runner(utils: types.ModuleType, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOEXEC_SERVER_BASEURL", "http://127.0.0.1:9")
    monkeypatch.setenv("AUTOEXEC_DB_URL", "mongodb://127.0.0.1:9/")
    ctx = utils.getAutoexecContext()  # no config.ini at all
    assert ctx.config["server"]["server.baseurl"] == "http://127.0.0.1:9"
    assert ctx.config["autoexec"]["db.url"] == "mongodb://127.0.0.1:9/"


def test_node_password_is_fetched_and_decrypted(utils: types.ModuleType, console: FakeConsole) -> None:
    # getNodePwd shares the account API's path: the fake console files it under getAccount
    console.responses["getAccount"] = encrypt_secret("node pass", PASS_KEY, "{ENCRYPTED}")
    assert utils.getNodePwd(11, "10.0.0.1", 22, "root", "ssh") == "node pass"
    assert _body(console, "getAccount") == {"jobId": "77", "resourceId": 11, "host": "10.0.0.1", "port": 22,
                                           "username": "root", "protocol": "ssh"}
    console.responses["getAccount"] = encrypt_secret("rc4 pass", PASS_KEY, "{RC4}")
    assert utils.getNodePwd(11, "10.0.0.1", 22, "root", "ssh") == "rc4 pass"
    console.responses["getAccount"] = "plain"
    assert utils.getNodePwd(11, "10.0.0.1", 22, "root", "ssh") == "plain"


def test_status_calls(utils: types.ModuleType, console: FakeConsole) -> None:
    assert utils.updateInspectStatus("Linux", 11, "warn", 2) is True
    body = _body(console, "updateInspectStatus")
    assert {k: body[k] for k in ("jobId", "ciType", "ciEntityId", "inspectStatus", "alertCount")} == {
        "jobId": "77", "ciType": "Linux", "ciEntityId": 11, "inspectStatus": "warn", "alertCount": 2}
    assert isinstance(body["inspectTime"], int) and body["inspectTime"] > 1_600_000_000_000
    assert utils.updateMonitorStatus("Linux", 11, "ok", 0) is True
    body = _body(console, "updateMonitorStatus")
    assert (body["monitorStatus"], body["ciEntityId"], body["alertCount"]) == ("ok", 11, 0)
    assert utils.setResourceInspectJobId(11, "77", "inspect") is True
    body = _body(console, "setResourceInspectJobId")
    assert (body["resourceId"], body["jobId"], body["phaseName"]) == (11, "77", "inspect")


def test_lookup_calls(utils: types.ModuleType, console: FakeConsole) -> None:
    console.responses["getCmdbCiAttrs"] = {"attrEntityData": {
        "a1": {"name": "ip", "actualValueList": ["10.0.0.1"]},
        "a2": {"name": "tags", "actualValueList": ["x", "y"]},
        "a3": {"name": "empty", "actualValueList": []}}}
    assert utils.getCmdbCiAttrs(11, ["ip", "tags", "empty"]) == {"ip": "10.0.0.1", "tags": ["x", "y"], "empty": None}
    assert _body(console, "getCmdbCiAttrs") == {"jobId": "77", "ciEntityId": 11, "attrList": ["ip", "tags", "empty"]}
    console.responses["getAccessEndpointConf"] = {"type": "http", "config": {"url": "http://x"}}
    assert utils.getAccessEndpointConf(11) == {"type": "http", "config": {"url": "http://x"}}
    assert _body(console, "getAccessEndpointConf") == {"jobId": "77", "tenant": "develop", "resourceId": 11}
    console.responses["getCITxtFilePathList"] = {"tbodyList": [{"id": 1, "path": "/etc/hosts"}]}
    assert utils.getCITxtFilePathList(11) == [{"id": 1, "path": "/etc/hosts"}]
    assert _body(console, "getCITxtFilePathList") == {"resourceId": 11}
    console.responses["getScript"] = {"script": "echo hi", "interpreter": "bash"}
    assert utils.getScript(345) == {"script": "echo hi", "interpreter": "bash"}
    get = [r for r in console.log if r.api == "getScript"]
    assert get[0].method == "GET" and get[0].query == {"operationId": "345"}


def test_resource_search_builds_the_consoles_condition_group(utils: types.ModuleType, console: FakeConsole) -> None:
    console.responses["getResourceInfoList"] = {"tbodyList": [{"id": 11, "name": "db1"}]}
    assert utils.getResourceInfoList("10.0.0.1", 3306, None, "Mysql") == [{"id": 11, "name": "db1"}]
    body = _body(console, "getResourceInfoList")
    group = body["conditionGroupList"][0]
    assert [(c["name"], c["valueList"], c["expression"]) for c in group["conditionList"]] == [
        ("ip", ["10.0.0.1"], "equal"), ("port", [3306], "equal"), ("typeIdList", ["Mysql"], "like")]
    uuids = [c["uuid"] for c in group["conditionList"]]
    assert group["conditionRelList"] == [{"joinType": "and", "from": uuids[0], "to": uuids[1]},
                                         {"joinType": "and", "from": uuids[1], "to": uuids[2]}]
    assert (body["searchMode"], body["currentPage"], body["pageSize"]) == ("text", 1, 10)
    err = importlib.import_module("AutoExecError").AutoExecError
    with pytest.raises(err, match="parameter empty"):
        utils.getResourceInfoList(None, "", None, None)


def test_upload_and_remove_a_file(utils: types.ModuleType, console: FakeConsole, tmp_path: Path) -> None:
    path = tmp_path / "hosts.txt"
    path.write_text("127.0.0.1 localhost\n")
    console.responses["uploadFile"] = {"id": 4711, "name": "hosts.txt"}
    assert utils.uploadFile(str(path), "inspectconfigfile") == {"id": 4711, "name": "hosts.txt"}
    upload = [r for r in console.log if r.api == "uploadFile"][0]
    assert upload.query == {}  # the signature covers the bare path
    assert b'name="type"\r\n\r\ninspectconfigfile' in upload.raw and b'name="param"\r\n\r\nfile' in upload.raw
    assert f'filename="{path}"'.encode() in upload.raw and b"127.0.0.1 localhost\n" in upload.raw
    assert utils.removeUploadedFile(4711) is None
    assert _body(console, "removeUploadedFile") == {"fileId": 4711}


def test_report_and_save_calls(utils: types.ModuleType, console: FakeConsole) -> None:
    utils.txtFileInspectSave({"resourceId": 11, "pathId": 2, "path": "/etc/hosts", "fileId": 4711})
    assert _body(console, "txtFileInspectSave")["fileId"] == 4711
    utils.notifyInspectReport({"jobId": "77", "status": "ok"})
    assert _body(console, "notifyInspectReport") == {"jobId": "77", "status": "ok"}
    envelope = utils.saveVersionMetrics({"version": "1.0", "metrics": {"loc": 10}})
    assert envelope["Status"] == "OK" and _body(console, "saveVersionMetrics")["metrics"] == {"loc": 10}
    assert utils.saveVersionCveList({"version": "1.0", "cveList": []})["Status"] == "OK"
    console.responses["getJobStatus"] = {"status": "completed"}
    assert utils.getJobStatus({"jobId": "88"}) == "completed"
    assert _body(console, "getJobStatus") == {"jobId": "88"}


def test_server_adapter_signs_as_another_user_for_job_creation(utils: types.ModuleType, console: FakeConsole) -> None:
    import ServerAdapter

    console.users["alice"] = "alice-token"
    console.responses["createJobFromCombop"] = {"jobId": 99}
    adapter = ServerAdapter.ServerAdapter(utils.getAutoexecContext())
    assert adapter.createJobFromCombop({"combopName": "c"}, "alice", "alice-token") == {"jobId": 99}
    assert adapter.refireJob({"jobId": 99, "type": "refireAll"}) == {}
    assert [r.api for r in console.log] == ["createJobFromCombop", "refireJob"]


def test_console_refusals_raise_autoexec_error_naming_the_call(utils: types.ModuleType, console: FakeConsole) -> None:
    from AutoExecError import AutoExecError

    console.responses["getJobStatus"] = (200, {"Status": "ERROR", "Message": "job 88 not found"})
    with pytest.raises(AutoExecError, match="getJobStatus 88 failed, job 88 not found"):
        utils.getJobStatus({"jobId": "88"})
    console.users.clear()  # every signature is refused now
    with pytest.raises(AutoExecError, match=r"Update inspect status for Linux/11 failed, .*authentication failed"):
        utils.updateInspectStatus("Linux", 11, "ok", 0)
    console.set_mode("down")
    with pytest.raises(AutoExecError, match="Get attributes for resourceId:11 failed, .*Request url:"):
        utils.getCmdbCiAttrs(11, ["ip"])
    assert str(AutoExecError("boom")) == "'boom'"


def test_get_db_asks_the_console_when_config_names_no_database(utils: types.ModuleType, console: FakeConsole) -> None:
    pytest.importorskip("pymongo")
    console.mongodb.update({"host": "127.0.0.1:1", "database": "tenantdb", "username": "u",
                            "passwordPlain": "p", "option": "authSource=admin"})
    client, db = utils.getDB()
    try:
        assert db.name == "tenantdb"
        cfg = utils.getAutoexecContext().config["autoexec"]
        assert cfg["db.url"] == "mongodb://127.0.0.1:1/?authSource=admin"
        assert (cfg["db.username"], cfg["db.password"]) == ("u", "p")
    finally:
        client.close()
    assert [r.api for r in console.log] == ["getMongoDBConf"]


# -- target side -------------------------------------------------------------------------------------
def test_remote_library_writes_output_next_to_the_tool(remote_utils: types.ModuleType, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "bundle" / "mytool"
    tool.parent.mkdir()
    monkeypatch.setattr(sys, "argv", [str(tool), "--password", "s3cret", "--node", '{"password": "x", "h": 1}', "-v", "1"])
    remote_utils.setEnv()
    assert os.environ["OUTPUT_PATH"] == str(tool.parent / "output.json")
    remote_utils.saveOutput({"名": "值"})
    assert json.loads((tool.parent / "output.json").read_text(encoding="utf-8")) == {"名": "值"}
    assert remote_utils.hidePwdInCmdLine() == [str(tool), "--password", "******", "--node",
                                               '{"password": "******", "h": 1}', "-v", "1"]


def test_remote_library_runs_on_the_oldest_syntax_targets_have(tmp_path: Path) -> None:
    """No f-strings or annotations: compile it as Python 2-compatible source would be."""
    source = (REMOTE_LIB / "AutoExecUtils.py").read_text()
    assert "f'" not in source and 'f"' not in source and "->" not in source
    compile(source, "AutoExecUtils.py", "exec")
