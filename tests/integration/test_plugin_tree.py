"""An estate's plugin tree in the original's layout, used in place: tools written in the original's
conventions (tests/data/plugin_tree) run on the runner and on real sshd targets with the library
paths, configuration, node fields and login environment the original gave them."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.fixtures_core import JobFiles
from tests.sshd_pool import TEST_PASSWORD

pytestmark = pytest.mark.integration

TREE = Path(__file__).resolve().parent.parent / "data" / "plugin_tree"
BASEURL = "http://127.0.0.1:9/autoexec-fixture-console"
PROFILE_USER = "autoexec-tprof"
PROFILE_HOME = "/var/lib/autoexec-tprof"


def _perl_has(*modules: str) -> str | None:
    for module in modules:
        if subprocess.run(["perl", f"-M{module}", "-e", "1"], capture_output=True).returncode != 0:
            return module
    return None


@pytest.fixture
def tree(tmp_path: Path, ae_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the fixture tree, named through a symlink (the case where tools resolving their
    real path would otherwise find another installation's conf/), and autoexec's config."""
    real = tmp_path / "estate-install"
    shutil.copytree(TREE, real, symlinks=True)
    link = tmp_path / "estate-link"
    link.symlink_to(real)
    conf = ae_home / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "config.ini").write_text(f"[server]\nserver.baseurl = {BASEURL}\n", encoding="utf-8")
    monkeypatch.setenv("AUTOEXEC_PLUGINS_PATH", str(link))
    return real


@pytest.fixture(scope="module")
def profile_account() -> Iterator[str]:
    """A target account whose ~/.bash_profile sets ORACLE_HOME and puts ~/bin on PATH (its own
    account, so the shared sshd test user's environment stays as other tests expect it)."""
    if os.geteuid() != 0:
        pytest.skip("creating the profile test account needs root")
    try:
        pwd.getpwnam(PROFILE_USER)
    except KeyError:
        subprocess.run(["useradd", "-M", "-d", PROFILE_HOME, "-s", "/bin/bash", PROFILE_USER], check=True,
                       capture_output=True)
    home = Path(PROFILE_HOME)
    (home / "bin").mkdir(parents=True, exist_ok=True)
    (home / ".bash_profile").write_text('export ORACLE_HOME=/opt/oracle-fixture\nexport PATH="$HOME/bin:$PATH"\n')
    tool = home / "bin" / "fixture-sqlplus"
    tool.write_text("#!/bin/sh\necho 'SQL*Plus fixture'\n")
    tool.chmod(0o755)
    for path in [home, home / "bin", home / ".bash_profile", tool]:
        shutil.chown(path, PROFILE_USER, PROFILE_USER)
    for _ in range(10):  # chpasswd fails while another session holds the shadow lock
        if subprocess.run(["chpasswd"], input=f"{PROFILE_USER}:{TEST_PASSWORD}\n", text=True,
                          capture_output=True).returncode == 0:
            break
    yield PROFILE_USER


def _nodes(nodes: list[dict[str, Any]]) -> str:
    header = {"jobRunnerIds": [1], "localRunnerId": 1, "totalCount": len(nodes)}
    return "\n".join(json.dumps(x) for x in [header, *nodes]) + "\n"


def _op(op_id: str, name: str, op_type: str, opt: dict[str, str] | None = None, interpreter: str | None = None,
        output: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"opId": op_id, "opName": name, "opType": op_type, "opt": opt or {},
                          "desc": {k: "text" for k in (opt or {})}}
    if interpreter:
        op["interpreter"] = interpreter
    if output:
        op["output"] = output
    return op


def _phase(name: str, phase_type: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
    return {"phaseName": name, "phaseType": phase_type, "operations": ops}


def test_runner_tools_of_a_tree_in_place(jobs: JobFiles, tree: Path, ae_home: Path) -> None:
    missing = _perl_has("JSON", "Crypt::RC4")
    if missing:
        pytest.skip(f"Perl module {missing} is not installed (.ci/run installs the distribution's package)")
    node = {"resourceId": 7, "runnerId": 1, "host": "10.9.9.7", "port": 22, "nodeName": "n7", "protocol": "ssh",
            "protocolPort": 22, "username": "app", "password": "n0de-Pw"}
    ops = [_op("estate/pynode_1", "estate/pynode", "runner_target", {"greet": "autoexec"},
               output={"host": {}, "passwordLength": {}, "baseurl": {}}),
           _op("estate/plnode_2", "estate/plnode", "runner_target", {"key": "k3y"},
               output={"cipher": {}, "baseurl": {}})]
    rt, outcome = jobs.run("7101", {"runFlow": [{"groupNo": 0, "phases": [_phase("tools", "runner_target", ops)]}]},
                           _nodes([node]))
    triple = "10.9.9.7-22-7"
    log = rt.jobdir.node_log("tools", triple).read_text()
    assert outcome.status == "succeed", log
    # the tree's own lib and autoexec's AutoExecUtils were importable; the tool ran in the job dir
    assert "estate lib greets autoexec" in log
    out = json.loads(rt.jobdir.op_output(triple, "estate/pynode_1").read_text())
    assert out["host"] == "10.9.9.7" and out["passwordLength"] == "7"
    assert out["cwd"] == str(rt.jobdir.root) and out["autoexecHome"] == str(ae_home)
    # both languages read autoexec's config.ini through their real path: the tree's conf/ links to it
    assert out["baseurl"] == BASEURL
    assert os.path.samefile(tree / "conf" / "config.ini", ae_home / "conf" / "config.ini")
    perl_out = json.loads(rt.jobdir.op_output(triple, "estate/plnode_2").read_text())
    from Crypto.Cipher import ARC4

    assert perl_out["cipher"] == ARC4.new(b"k3y").encrypt(b"n0de-Pw").hex()
    assert perl_out["baseurl"] == BASEURL
    # the password reached the tools, and nothing the job wrote
    written = "".join(p.read_text(errors="replace") for p in rt.jobdir.root.rglob("*")
                      if p.is_file() and p.name != "nodes.json")
    assert "n0de-Pw" not in written
    assert (rt.jobdir.root / "livedata" / "tools" / triple).is_dir()


def test_tree_tools_on_the_runner_and_on_ssh_targets(jobs: JobFiles, tree: Path, sshd_pool,  # type: ignore[no-untyped-def]
                                                     profile_account: str) -> None:
    port = sshd_pool.ports[0]
    node = {"resourceId": 21, "runnerId": 1, "host": "127.0.0.1", "port": port, "nodeName": "t21",
            "protocol": "ssh", "protocolPort": port, "username": profile_account, "password": TEST_PASSWORD}
    flow = [
        _phase("login", "runner_target", [_op("estate/sshlogin_1", "estate/sshlogin", "runner_target",
                                              output={"who": {}})]),
        _phase("target", "target", [
            _op("estate/profenv_2", "estate/profenv", "target", interpreter="bash",
                output={"oracleHome": {}, "banner": {}}),
            _op("estate/plprofenv_3", "estate/plprofenv", "target", interpreter="perl",
                output={"oracleHome": {}, "emptyPassword": {}})]),
    ]
    rt, outcome = jobs.run("7103", {"runFlow": [{"groupNo": 0, "phases": flow}]}, _nodes([node]))
    triple = f"127.0.0.1-{port}-21"
    logs = {p: rt.jobdir.node_log(p, triple).read_text() for p in ("login", "target")}
    assert outcome.status == "succeed", "\n".join(logs.values())
    # a runner-side tool logs in to its node with the password of AUTOEXEC_NODE
    assert json.loads(rt.jobdir.op_output(triple, "estate/sshlogin_1").read_text()) == {"who": profile_account}
    # target tools, shell and Perl, see what the account's profile sets, and TERM=dumb
    shell_out = json.loads(rt.jobdir.op_output(triple, "estate/profenv_2").read_text())
    assert shell_out == {"oracleHome": "/opt/oracle-fixture", "banner": "SQL*Plus fixture"}
    assert "TERM=dumb" in logs["target"]
    perl_out = json.loads(rt.jobdir.op_output(triple, "estate/plprofenv_3").read_text())
    assert perl_out == {"oracleHome": "/opt/oracle-fixture", "emptyPassword": "yes"}
    assert TEST_PASSWORD not in "".join(logs.values())
    # nothing staged is left in the job dir; op outputs sit where the original puts them
    assert not list(rt.jobdir.root.rglob(".fetch"))
    assert (rt.jobdir.root / "output-op" / triple / "estate" / "profenv_2.json").is_file()


def test_tree_target_tool_over_tagent(jobs: JobFiles, tree: Path, tagent_agent) -> None:  # type: ignore[no-untyped-def]
    """Over Tagent the agent sets up the login environment; the tool gets the node without its
    password, as the original sent it."""
    node = {"resourceId": 31, "runnerId": 1, "host": "127.0.0.1", "port": tagent_agent.port, "nodeName": "tag31",
            "protocol": "tagent", "protocolPort": tagent_agent.port, "username": "root",
            "password": tagent_agent.password}
    op = _op("estate/plprofenv_1", "estate/plprofenv", "target", interpreter="perl",
             output={"oracleHome": {}, "emptyPassword": {}})
    rt, outcome = jobs.run("7104", {"runFlow": [{"groupNo": 0, "phases": [_phase("target", "target", [op])]}]},
                           _nodes([node]))
    triple = f"127.0.0.1-{tagent_agent.port}-31"
    log = rt.jobdir.node_log("target", triple).read_text()
    assert outcome.status == "succeed", log
    assert json.loads(rt.jobdir.op_output(triple, "estate/plprofenv_1").read_text())["emptyPassword"] == "yes"
    assert not list(rt.jobdir.root.rglob(".fetch"))
