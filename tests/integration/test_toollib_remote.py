"""Target-side tools of the original's conventions (tests/toollib_tools/plugins/remote) on a real
sshd target: the bundled remote lib is uploaded next to the tool, AutoExecUtils (Perl and Python)
writes output.json where the runner fetches it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.fixtures_core import JobFiles

pytestmark = pytest.mark.integration

TOOLS = Path(__file__).resolve().parent.parent / "toollib_tools" / "plugins"


def test_remote_perl_and_python_tools_save_output_through_the_library(jobs: JobFiles, sshd_pool) -> None:  # type: ignore[no-untyped-def]
    shutil.copytree(TOOLS, jobs.home / "plugins")
    port = sshd_pool.ports[0]
    node = {"resourceId": 31, "runnerId": 1, "host": "127.0.0.1", "port": port, "nodeName": "target31",
            "protocol": "ssh", "protocolPort": port, "username": sshd_pool.user, "password": sshd_pool.password}
    header = {"jobRunnerIds": [1], "localRunnerId": 1, "totalCount": 1}
    out = {"word": {"type": "text"}}
    ops = [{"opId": "plremote_1", "opName": "toollibtest/plremote", "opType": "target", "interpreter": "perl",
            "opt": {"word": "perl-says", "password": "pw-123"}, "desc": {"word": "text", "password": "password"}, "output": out},
           {"opId": "pyremote_2", "opName": "toollibtest/pyremote", "opType": "target", "interpreter": "python",
            "opt": {"word": "py-says", "password": "pw-456"}, "desc": {"word": "text", "password": "password"}, "output": out}]
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "remote", "phaseType": "target", "operations": ops}]}]}
    rt, outcome = jobs.run("931", params, "\n".join(json.dumps(x) for x in [header, node]) + "\n")
    triple = f"127.0.0.1-{port}-31"
    log = rt.jobdir.node_log("remote", triple).read_text()
    assert outcome.status == "succeed", log
    output = json.loads(rt.jobdir.node_output(triple).read_text())
    assert output["plremote_1"]["word"] == "perl-says" and output["plremote_1"]["nodeName"] == "target31"
    assert output["plremote_1"]["outputPath"].endswith("/toollibtest/output.json")
    assert output["plremote_1"]["passLength"] == len("pw-123")
    assert "INFO: running as plremote --word perl-says --password ******" in log  # setEnv masked $0
    assert "pw-123" not in log and "pw-456" not in log
    assert output["pyremote_2"] == {"word": "py-says", "node": "target31"}
    assert "INFO: command line pyremote --word py-says --password ******" in log
