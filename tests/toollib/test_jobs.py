"""Tools in the original's conventions (tests/toollib_tools) run in real jobs: a Python tool using
AutoExecUtils' job-socket calls, a Perl tool using AutoExecUtils.pm with JSON and Crypt::RC4, and
tools lacking a module, which get a log line naming it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from autoexec.conf.secrets import encrypt_secret
from tests.fixtures_core import JobFiles, nodes_lines

TOOLS = Path(__file__).resolve().parents[1] / "toollib_tools" / "plugins"
KEY = "toollib-password-key"


@pytest.fixture
def tool_jobs(jobs: JobFiles) -> JobFiles:
    shutil.copytree(TOOLS, jobs.home / "plugins")
    (jobs.home / "conf").mkdir()
    (jobs.home / "conf" / "config.ini").write_text(f"[server]\npassword.key = {KEY}\n")
    return jobs


def _tool_op(op_id: str, name: str, **extra: object) -> dict:
    op = {"opId": op_id, "opName": f"toollibtest/{name}", "opType": "runner", "opt": {}, "desc": {}}
    op.update(extra)
    return op


def _job(*phases: tuple[str, list[dict]]) -> dict:
    return {"runFlow": [{"groupNo": i, "phases": [{"phaseName": name, "phaseType": "runner", "operations": ops}]}
                        for i, (name, ops) in enumerate(phases)]}


def test_python_and_perl_tools_of_the_original_conventions_use_the_library(tool_jobs: JobFiles) -> None:
    secret = encrypt_secret("pa55 word", KEY, "{RC4}")
    py = _tool_op("pyuse_1", "pyuse", opt={"secret": secret, "name": "n1"}, desc={"secret": "password", "name": "text"})
    pl = _tool_op("pluse_2", "pluse", opt={"key": "k3y", "text": "hello"}, desc={"key": "text", "text": "text"})
    rt, outcome = tool_jobs.run("901", _job(("first", [py]), ("second", [pl])), nodes_lines(2))
    logs = {p: rt.jobdir.node_log(p, "local-0-0").read_text() for p in ("first", "second")}
    assert outcome.status == "succeed", logs

    out = json.loads(rt.jobdir.op_output("local-0-0", "pyuse_1").read_text())
    assert out["secretLength"] == len("pa55 word")  # the runner decrypted the password option
    assert out["nodes"] == ["10.1.0.1", "10.1.0.2"]  # getNodesArray(): the job's nodes.json
    assert out["waitStatus"] == "waitInput" and out["afterClean"] == "running"
    assert out["interact"]["options"] == ["yes", "no"] and out["interact"]["message"] == "Go on?"
    assert out["adapter"] == "ServerAdapter"
    assert "INFO: Save output success." in logs["first"]

    perl = json.loads(rt.jobdir.op_output("local-0-0", "pluse_2").read_text())
    assert perl["roundTrip"] is True and len(perl["cipher"]) == 2 * len("hello")
    assert perl["fromPython"] == "set by pyuse n1"  # setJobEnv reached the next phase's tools
    assert perl["nodeHost"] == "local" and "pyuse_1" in perl["seenOps"]  # loadNodeOutput()


@pytest.mark.parametrize(("tool", "expected"), [
    ("perlmissing", "lacks the Perl module Toollib::Test::NotInstalled: install it on the runner "
                    "(Debian usually packages it as libtoollib-test-notinstalled-perl"),
    ("pymissing", "lacks the Python module toollib_test_not_installed: install the package providing "
                  "'toollib_test_not_installed' on the runner"),
])
def test_a_tool_lacking_a_module_gets_a_line_naming_it(tool_jobs: JobFiles, tool: str, expected: str) -> None:
    rt, outcome = tool_jobs.run("902", _job(("p", [_tool_op(f"{tool}_1", tool)])))
    log = rt.jobdir.node_log("p", "local-0-0").read_text()
    assert outcome.status == "failed"
    lines = [ln for ln in log.splitlines() if "ERROR: The tool lacks" in ln]
    assert len(lines) == 1 and expected in lines[0], log
