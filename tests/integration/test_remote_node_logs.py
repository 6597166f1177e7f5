"""What a node log says about remote ops: exit statuses over runner, SSH and Tagent alike, and a
non-UTF-8 tool line decoded the same way wherever the tool ran."""
from __future__ import annotations

import json

import pytest

from tests.fixtures_core import JobFiles, script_op

pytestmark = pytest.mark.integration

GBK_LINE = "磁盘检查：正常"
"""Printed as GBK bytes by the tool; the node log must show this text on every transport."""


def _nodes(nodes: list[dict]) -> str:
    header = {"jobRunnerIds": [1], "localRunnerId": 1, "totalCount": len(nodes)}
    return "\n".join(json.dumps(x) for x in [header, *nodes]) + "\n"


def _phase(name: str, phase_type: str, op: dict) -> dict:
    return {"phaseName": name, "phaseType": phase_type, "operations": [op]}


def _logs(rt, phase: str, nodes: list[dict]) -> dict[int, str]:  # type: ignore[no-untyped-def]
    return {n["resourceId"]: rt.jobdir.node_log(phase, f"{n['host']}-{n['port']}-{n['resourceId']}").read_text()
            for n in nodes}


def _remote_nodes(sshd_pool, tagent_agent) -> list[dict]:  # type: ignore[no-untyped-def]
    return [{"resourceId": 61, "runnerId": 1, "host": "127.0.0.1", "port": sshd_pool.ports[0], "nodeName": "s61",
             "protocol": "ssh", "protocolPort": sshd_pool.ports[0], "username": sshd_pool.user,
             "password": sshd_pool.password},
            {"resourceId": 62, "runnerId": 1, "host": "127.0.0.1", "port": tagent_agent.port, "nodeName": "t62",
             "protocol": "tagent", "protocolPort": tagent_agent.port, "username": "root",
             "password": tagent_agent.password}]


@pytest.mark.parametrize("phase_type", ["target", "runner_target"])
def test_failed_op_names_its_exit_status_in_the_node_log(jobs: JobFiles, sshd_pool, tagent_agent,  # type: ignore[no-untyped-def]
                                                         phase_type: str) -> None:
    op = script_op("check_1", "echo checking\nexit 7\n", phase_type)
    nodes = _remote_nodes(sshd_pool, tagent_agent)
    rt, outcome = jobs.run("611", {"runFlow": [{"groupNo": 0, "phases": [_phase("p", phase_type, op)]}]},
                           _nodes(nodes))
    assert outcome.status == "failed"
    for rid, log in _logs(rt, "p", nodes).items():
        assert "ERROR: check exited with status 7" in log, (rid, log)
        assert log.index("checking") < log.index("ERROR: check exited with status 7")
    console = rt.jobdir.console_log.read_text()
    assert console.count("execute failed: check exited with status 7.") == 2


def test_signal_deaths_are_named(jobs: JobFiles, sshd_pool, tagent_agent) -> None:  # type: ignore[no-untyped-def]
    op = script_op("boom_1", "kill -9 $$\n", "target")
    nodes = _remote_nodes(sshd_pool, tagent_agent)
    rt, outcome = jobs.run("612", {"runFlow": [{"groupNo": 0, "phases": [_phase("p", "target", op)]}]},
                           _nodes(nodes))
    assert outcome.status == "failed"
    logs = _logs(rt, "p", nodes)
    assert "ERROR: boom exited with status 137 (128+9: SIGKILL?)" in logs[61], logs[61]
    assert "ERROR: boom exited with status" in logs[62], logs[62]
    local = script_op("boom_1", "kill -9 $$\n", "runner")
    rt, _ = jobs.run("613", {"runFlow": [{"groupNo": 0, "phases": [_phase("r", "runner", local)]}]})
    runner_log = rt.jobdir.node_log("r", "local-0-0").read_text()
    assert "ERROR: boom was killed by signal 9 (SIGKILL)" in runner_log, runner_log


def test_gbk_output_reads_the_same_over_local_ssh_and_tagent(jobs: JobFiles, sshd_pool, tagent_agent) -> None:  # type: ignore[no-untyped-def]
    octal = "".join(f"\\{b:03o}" for b in GBK_LINE.encode("gbk"))
    script = f"printf '{octal}\\n'\nprintf 'utf8 ok \\344\\270\\255\\n'\n"
    nodes = _remote_nodes(sshd_pool, tagent_agent)
    params = {"runFlow": [{"groupNo": 0, "phases": [_phase("remote", "target", script_op("enc_1", script, "target")),
                                                    _phase("local", "runner", script_op("enc_2", script, "runner"))]}]}
    rt, outcome = jobs.run("614", params, _nodes(nodes))
    assert outcome.status == "succeed"
    logs = list(_logs(rt, "remote", nodes).values()) + [rt.jobdir.node_log("local", "local-0-0").read_text()]
    for log in logs:
        assert GBK_LINE in log and "utf8 ok 中" in log, log
