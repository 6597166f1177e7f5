"""One line rule for every transport: the same bytes printed by a runner tool, over SSH and through
a Tagent agent show the same text in the node log; ``output.charsets`` changes it everywhere."""
from __future__ import annotations

import json

import pytest

from tests.fixtures_core import JobFiles, script_op

pytestmark = pytest.mark.integration

# "你好" in GBK, a CRLF ending, then a byte no charset takes, then a Big5 "中文" that GB18030 reads otherwise
PRINT = ("printf 'mark-a \\304\\343\\272\\303 gbk\\r\\n'; printf 'mark-b bad \\377 end\\n'; "
         "printf 'mark-c \\244\\244\\244\\345\\n'\n")


def _job(ssh: dict, tagent: dict) -> tuple[dict, str]:
    params = {"runFlow": [{"groupNo": 0, "phases": [
        {"phaseName": "here", "phaseType": "runner", "operations": [script_op("show_1", PRINT, "runner")]},
        {"phaseName": "there", "phaseType": "target", "operations": [script_op("show_2", PRINT, "target")]},
    ]}]}
    header = {"jobRunnerIds": [1], "localRunnerId": 1, "totalCount": 2}
    return params, "\n".join(json.dumps(x) for x in [header, ssh, tagent]) + "\n"


def _marked(text: str) -> list[str]:
    return [line[line.index("mark-"):] for line in text.splitlines() if "mark-" in line and "printf" not in line]


@pytest.mark.parametrize("charsets", ["", "big5"])
def test_gbk_line_reads_the_same_from_a_local_tool_over_ssh_and_tagent(
        jobs: JobFiles, sshd_pool, tagent_agent, monkeypatch: pytest.MonkeyPatch, charsets: str) -> None:  # type: ignore[no-untyped-def]
    if charsets:
        monkeypatch.setenv("AUTOEXEC_OUTPUT_CHARSETS", charsets)
    port = sshd_pool.ports[0]
    ssh = {"resourceId": 41, "runnerId": 1, "host": "127.0.0.1", "port": port, "protocol": "ssh",
           "protocolPort": port, "username": sshd_pool.user, "password": sshd_pool.password}
    tagent = {"resourceId": 42, "runnerId": 1, "host": "127.0.0.1", "port": tagent_agent.port, "protocol": "tagent",
              "protocolPort": tagent_agent.port, "username": "root", "password": tagent_agent.password}
    params, nodes = _job(ssh, tagent)
    job_id = "3911" if not charsets else "3912"
    rt, outcome = jobs.run(job_id, params, nodes)
    logs = {"local": rt.jobdir.node_log("here", "local-0-0").read_text(encoding="utf-8"),
            "ssh": rt.jobdir.node_log("there", f"127.0.0.1-{port}-41").read_text(encoding="utf-8"),
            "tagent": rt.jobdir.node_log("there", f"127.0.0.1-{tagent_agent.port}-42").read_text(encoding="utf-8")}
    assert outcome.status == "succeed", logs
    codec = charsets or "gb18030"
    gbk, big5 = b"\xc4\xe3\xba\xc3".decode(codec), b"\xa4\xa4\xa4\xe5".decode(codec)
    expected = [f"mark-a {gbk} gbk", "mark-b bad \ufffd end", f"mark-c {big5}"]
    assert expected[0 if not charsets else 2] in ("mark-a 你好 gbk", "mark-c 中文")
    for name, text in logs.items():
        assert _marked(text) == expected, (name, text)
