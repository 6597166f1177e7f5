"""The tools' TagentClient class (autoexec/toollib/TagentClient.py), method by method, against the
real Tagent test agent on loopback: the original's names, arguments and results."""
from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Iterator

import pytest

from autoexec.conf.config import PACKAGE_DIR
from tests.fixtures_tagent import TAGENT_TEST_PASSWORD
from tests.tagent_agent import TagentTestAgent

TOOLLIB = PACKAGE_DIR / "toollib"


@pytest.fixture
def tc(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    sys.modules.pop("TagentClient", None)
    monkeypatch.syspath_prepend(str(TOOLLIB))
    yield importlib.import_module("TagentClient")
    sys.modules.pop("TagentClient", None)


def _client(tc: types.ModuleType, agent: TagentTestAgent, password: str = TAGENT_TEST_PASSWORD) -> object:
    return tc.TagentClient(agent.host, agent.port, password, connectTimeout=10, readTimeout=30, writeTimeout=10)


def test_connection_echo_and_agent_facts(tc: types.ModuleType, tagent_agent_any: TagentTestAgent,
                                         capsys: pytest.CaptureFixture) -> None:
    client = _client(tc, tagent_agent_any)
    assert client.getConnection(1) is not None
    assert (client.agentCharset, client.agentOsType) == ("UTF-8", "unix")
    client.close()
    client.echo(None, "Agent logon success.\n", 1)
    assert "Agent logon success." in capsys.readouterr().out
    with pytest.raises(tc.AuthError, match="check the credential"):
        _client(tc, tagent_agent_any, "wrong-password").getConnection()
    with pytest.raises(tc.AgentError):
        tc.TagentClient("127.0.0.1", 1, "x", connectTimeout=5).getConnection()


def test_exec_cmd_streams_lines_to_the_callback_and_returns_the_status(tc: types.ModuleType,
                                                                       tagent_agent: TagentTestAgent) -> None:
    client = _client(tc, tagent_agent)
    seen: list[bytes] = []
    status = client.execCmd("root", "echo one; echo $GREETING; exit 3", env={"GREETING": "two"},
                            callback=lambda line, tag: seen.append(tag + line), cbparams=(b"> ",))
    assert status == 3
    assert seen == [b"> one\n", b"> two\n"]
    assert client.getCmdOut("root", "echo a; echo b") == ["a\n", "b\n"]
    with pytest.raises(tc.AgentError):
        client.getCmdOut("root", "echo bad; exit 1")
    assert client.execCmdAsync("root", "true") == 0


def test_files_go_up_and_come_back(tc: types.ModuleType, tagent_agent: TagentTestAgent, tmp_path: Path) -> None:
    client = _client(tc, tagent_agent)
    remote = Path(tagent_agent.tmpdir)
    assert client.writeFile("root", b"written\n", f"{remote}/w.txt") == 0
    assert (remote / "w.txt").read_bytes() == b"written\n"
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("in a dir\n")
    (remote / "up").mkdir()
    assert client.upload("root", str(src), f"{remote}/up", dirCreate=True) == 0
    assert (remote / "up" / "src" / "sub" / "f.txt").read_text() == "in a dir\n"
    single = tmp_path / "one.txt"
    single.write_text("one\n")
    assert client.upload("root", str(single), f"{remote}/up/") == 0
    assert (remote / "up" / "one.txt").read_text() == "one\n"
    back = tmp_path / "back.txt"
    assert client.download("root", f"{remote}/w.txt", str(back)) == 0
    assert back.read_bytes() == b"written\n"
    with pytest.raises(tc.AgentError, match="not exists"):
        client.upload("root", str(tmp_path / "missing"), f"{remote}/x")


def test_trans_file_copies_from_one_agent_to_another(tc: types.ModuleType, tagent_agent_any: TagentTestAgent) -> None:
    """Source and destination are the same test agent here (one agent per test); the copy still
    goes download -> runner -> upload over two connections, as between two hosts."""
    base = Path(tagent_agent_any.tmpdir)
    (base / "conf").mkdir()
    (base / "conf" / "app.ini").write_text("k=v\n")
    (base / "dest").mkdir()
    dest = _client(tc, tagent_agent_any)
    status = dest.transFile(tagent_agent_any.host, tagent_agent_any.port, "root", TAGENT_TEST_PASSWORD,
                            f"{base}/conf", "root", f"{base}/dest/")
    assert status == 0
    assert (base / "dest" / "conf" / "app.ini").read_text() == "k=v\n"
