"""Whole jobs on remote nodes: real sshd targets and the Tagent test agent, mixed in one phase."""
from __future__ import annotations

import json
import threading
import uuid
import time
from pathlib import Path

import pytest

from tests.fixtures_core import JobFiles, run_runtime, script_op
from tests.procs import pids_with_env
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

REMOTE_SCRIPT = ('echo "on $(hostname) as $(id -un) job=$AUTOEXEC_JOBID host=$NODE_HOST"\n'
                 'echo "argv: $1|$2"\n'
                 'printf \'{"who": "%s", "arg": "%s"}\' "$NODE_NAME" "$1" > output.json\n')


def _ssh_node(rid: int, pool, port: int, password: str | None = None, name: str = "") -> dict:  # type: ignore[no-untyped-def]
    return {"resourceId": rid, "runnerId": 1, "host": "127.0.0.1", "port": port, "nodeName": name or f"ssh{rid}",
            "protocol": "ssh", "protocolPort": port, "username": pool.user,
            "password": pool.password if password is None else password}


def _nodes(nodes: list[dict]) -> str:
    header = {"jobRunnerIds": [1], "localRunnerId": 1, "totalCount": len(nodes)}
    return "\n".join(json.dumps(x) for x in [header, *nodes]) + "\n"


def _target_job(op: dict) -> dict:
    return {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "remote", "phaseType": "target", "operations": [op]}]}]}


def test_script_op_on_ssh_and_tagent_nodes_in_one_phase(jobs: JobFiles, sshd_pool, tagent_agent) -> None:  # type: ignore[no-untyped-def]
    op = script_op("hello_1", REMOTE_SCRIPT, "target", output={"who": {"type": "text"}, "arg": {"type": "text"}},
                   arg=[{"type": "text", "value": "$HOME `x` 'q'"}, {"type": "text", "value": "two words"}])
    nodes = [_ssh_node(11, sshd_pool, sshd_pool.ports[0]), _ssh_node(12, sshd_pool, sshd_pool.ports[1]),
             {"resourceId": 13, "runnerId": 1, "host": "127.0.0.1", "port": tagent_agent.port, "nodeName": "tag13",
              "protocol": "tagent", "protocolPort": tagent_agent.port, "username": "root",
              "password": tagent_agent.password}]
    rt, outcome = jobs.run("301", _target_job(op), _nodes(nodes))
    logs = {n["resourceId"]: rt.jobdir.node_log("remote", f"127.0.0.1-{n['port']}-{n['resourceId']}").read_text()
            for n in nodes}
    assert outcome.status == "succeed", logs
    for node in nodes:
        triple = f"127.0.0.1-{node['port']}-{node['resourceId']}"
        assert "job=301" in logs[node["resourceId"]]
        assert "argv: $HOME `x` 'q'|two words" in logs[node["resourceId"]]
        output = json.loads(rt.jobdir.node_output(triple).read_text())
        assert output["hello_1"] == {"who": node["nodeName"], "arg": "$HOME `x` 'q'"}
        assert json.loads(rt.jobdir.node_status("remote", triple).read_text())["status"] == "succeed"
    assert not list(Path("/tmp").glob("autoexec-301-*")), "remote job dirs must be cleaned up"


def test_builtin_remote_tool_runs_from_plugins(jobs: JobFiles, sshd_pool) -> None:  # type: ignore[no-untyped-def]
    op = {"opId": "cmd_1", "opName": "basic/cmdrun", "opType": "target", "opt": {"cmd": "echo built-in says $((6*7))"},
          "desc": {"cmd": "text"}}
    rt, outcome = jobs.run("302", _target_job(op), _nodes([_ssh_node(21, sshd_pool, sshd_pool.ports[0])]))
    log = rt.jobdir.node_log("remote", f"127.0.0.1-{sshd_pool.ports[0]}-21").read_text()
    assert outcome.status == "succeed", log
    assert "built-in says 42" in log


def test_bad_nodes_fail_alone_with_one_clear_line(jobs: JobFiles, sshd_pool) -> None:  # type: ignore[no-untyped-def]
    op = script_op("hello_1", "echo fine\n", "target")
    good = _ssh_node(31, sshd_pool, sshd_pool.ports[0])
    wrong_password = _ssh_node(32, sshd_pool, sshd_pool.ports[1], password="not-the-password")
    closed = _ssh_node(33, sshd_pool, 1)  # nothing listens on port 1
    started = time.monotonic()
    rt, outcome = jobs.run("303", _target_job(op), _nodes([good, wrong_password, closed]))
    assert time.monotonic() - started < 30
    assert outcome.status == "failed"
    status = {n["resourceId"]: json.loads(rt.jobdir.node_status("remote", f"127.0.0.1-{n['port']}-{n['resourceId']}")
                                         .read_text())["status"] for n in (good, wrong_password, closed)}
    assert status == {31: "succeed", 32: "failed", 33: "failed"}
    bad_log = rt.jobdir.node_log("remote", f"127.0.0.1-{sshd_pool.ports[1]}-32").read_text()
    assert "authentication failed" in bad_log
    assert "not-the-password" not in bad_log
    for path in rt.jobdir.root.rglob("*"):  # nodes.json is the console's input, kept as given
        if path.is_file() and path.name != "nodes.json":
            assert "not-the-password" not in path.read_text(errors="replace"), path


def test_abort_kills_the_remote_process(jobs: JobFiles, sshd_pool) -> None:  # type: ignore[no-untyped-def]
    marker = Path(f"/tmp/ae-remote-started-{uuid.uuid4().hex}")  # the ssh test user cannot write to tmp_path
    op = script_op("long_1", f"touch {marker}\nsleep 300\n", "target")
    rt = jobs.runtime("304", _target_job(op), _nodes([_ssh_node(41, sshd_pool, sshd_pool.ports[0])]))

    def abort_when_started() -> None:
        wait_until(marker.exists, 20, required=False)
        rt.control.abort()

    threading.Thread(target=abort_when_started, daemon=True).start()
    started = time.monotonic()
    outcome = run_runtime(rt)
    assert marker.exists(), "the remote op never started"
    marker.unlink()
    assert outcome.status == "aborted" and time.monotonic() - started < 25
    wait_until(lambda: not _remote_sleepers("304"), 5, "the remote sleepers to be killed", interval=0.1)
    triple = f"127.0.0.1-{sshd_pool.ports[0]}-41"
    assert json.loads(rt.jobdir.node_status("remote", triple).read_text())["status"] == "aborted"


def _remote_sleepers(job_id: str) -> list[int]:
    return pids_with_env(f"AUTOEXEC_JOBID={job_id}")


@pytest.mark.parametrize("protocol", ["ssh", "tagent"])
def test_remote_filepath_outputs_come_back_into_the_job_dir(jobs: JobFiles, sshd_pool, tagent_agent, protocol) -> None:  # type: ignore[no-untyped-def]
    script = 'mkdir -p out\necho "report body" > out/report.txt\necho \'{"report": "out/report.txt", "bad": "../../x"}\' > output.json\n'
    op = script_op("rep_1", script, "target", output={"report": {"type": "filepath"}, "bad": {"type": "text"}})
    if protocol == "ssh":
        node = _ssh_node(51, sshd_pool, sshd_pool.ports[0])
    else:
        node = {"resourceId": 51, "runnerId": 1, "host": "127.0.0.1", "port": tagent_agent.port, "protocol": "tagent",
                "protocolPort": tagent_agent.port, "username": "root", "password": tagent_agent.password}
    rt, outcome = jobs.run("305", _target_job(op), _nodes([node]))
    triple = f"127.0.0.1-{node['port']}-51"
    assert outcome.status == "succeed", rt.jobdir.node_log("remote", triple).read_text()
    out = json.loads(rt.jobdir.node_output(triple).read_text())["rep_1"]
    assert out["report"] == f"output-op/{triple}/rep_1/report.txt"
    assert (rt.jobdir.root / out["report"]).read_text() == "report body\n"


def test_node_without_a_password_logs_in_through_a_credentials_block(jobs: JobFiles, sshd_pool,  # type: ignore[no-untyped-def]
                                                                     prefect_home: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from autoexec.blocks import NodeCredentials

    url = json.loads((prefect_home / "prefect" / "server.json").read_text())["url"]
    block = f"pool-login-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PREFECT_API_URL", url)  # what the CLI does before a job starts
    with temporary_settings(updates={PREFECT_API_URL: url}):
        NodeCredentials(username=sshd_pool.user, password=sshd_pool.password).save(block, overwrite=True)
        via_block = dict(_ssh_node(41, sshd_pool, sshd_pool.ports[0]), password="", username="x",
                         credentialsBlock=block)
        unknown = dict(_ssh_node(42, sshd_pool, sshd_pool.ports[1]), password="", credentialsBlock="no-such-block")
        rt, outcome = jobs.run("305", _target_job(script_op("w_1", "id -un\n", "target")), _nodes([via_block, unknown]))
    ok = rt.jobdir.node_log("remote", f"127.0.0.1-{sshd_pool.ports[0]}-41").read_text()
    bad = rt.jobdir.node_log("remote", f"127.0.0.1-{sshd_pool.ports[1]}-42").read_text()
    assert sshd_pool.user in ok and "Node execute complete, status:succeed" in ok, ok
    assert "no-such-block" in bad and "status:failed" in bad
    assert sshd_pool.password not in ok + bad
