from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from autoexec.conf.config import Config
from autoexec.console.client import ConsoleClient
from autoexec.console.downloads import script_file_name
from autoexec.console.errors import (ConsoleAuthError, ConsoleDownloadError, ConsoleHTTPError,
                                     ConsoleStatusError, ConsoleUnavailable)
from autoexec.jobdir.layout import JobDir
from tests.fake_console import TOKEN, USER, FakeConsole, Script

NODES = '{"jobRunnerIds":[1],"localRunnerId":1,"totalCount":1}\n{"host":"10.0.0.1","resourceId":7}\n'


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


def test_from_config_and_repr_hides_token(fake_console: FakeConsole, tmp_path: Path) -> None:
    cfg = Config(home=tmp_path, path=tmp_path / "c.ini", server_baseurl=fake_console.url,
                 server_username=USER, server_password=TOKEN, tenant="develop")
    client = ConsoleClient.from_config(cfg)
    assert client.tenant == "develop"
    assert TOKEN not in repr(client)
    fake_console.params["5"] = {"jobId": 5}
    assert client.get_params("5", tmp_path / "params.json") == {"jobId": 5}
    assert fake_console.log[-1].tenant == "develop"


def test_get_params_writes_pretty_json(console_client: ConsoleClient, fake_console: FakeConsole,
                                       tmp_path: Path) -> None:
    fake_console.params["42"] = {"jobId": 42, "name": "倒计时"}
    dest = tmp_path / "params.json"
    assert console_client.get_params("42", dest) == {"jobId": 42, "name": "倒计时"}
    assert dest.read_text(encoding="utf-8") == json.dumps({"jobId": 42, "name": "倒计时"},
                                                          indent=4, ensure_ascii=False)
    assert fake_console.log[-1].body == {"jobId": "42", "lastModified": 0}
    console_client.get_params("42", dest)
    assert fake_console.log[-1].body["lastModified"] > 0


def test_get_params_refused_leaves_no_file(console_client: ConsoleClient, tmp_path: Path) -> None:
    dest = tmp_path / "params.json"
    with pytest.raises(ConsoleStatusError, match="job 9 not found"):
        console_client.get_params("9", dest)
    assert list(tmp_path.iterdir()) == []


def test_bad_token_is_auth_error_without_secret(fake_console: FakeConsole, tmp_path: Path) -> None:
    client = ConsoleClient(fake_console.url, USER, "wrong-token-123", tenant="t")
    with pytest.raises(ConsoleAuthError) as info:
        client.get_params("1", tmp_path / "params.json")
    assert info.value.status_code == 522
    assert "authentication failed" in str(info.value)
    assert "wrong-token-123" not in str(info.value) and "wrong-token-123" not in repr(info.value)
    assert fake_console.log == []


def test_console_down_is_unavailable(fake_console: FakeConsole, console_client: ConsoleClient) -> None:
    fake_console.set_mode("down")
    with pytest.raises(ConsoleUnavailable) as info:
        console_client.get_mongodb_conf()
    assert info.value.retryable


def test_5xx_is_http_error_with_console_message(fake_console: FakeConsole,
                                                console_client: ConsoleClient) -> None:
    fake_console.set_mode("5xx", code=520)
    with pytest.raises(ConsoleHTTPError, match="fake console: internal error") as info:
        console_client.call("updateJobStatus", {"jobId": "1"})
    assert info.value.status_code == 520 and not isinstance(info.value, ConsoleAuthError)


def test_get_nodes_download_then_204_keeps_copy(console_client: ConsoleClient, fake_console: FakeConsole,
                                                tmp_path: Path) -> None:
    fake_console.set_nodes("7", NODES, node_from="phase", phase="deploy", modified=1000.0)
    dest = JobDir(tmp_path).phase_nodes("deploy")
    assert dest.name == "nodes-ph-deploy.json"
    assert console_client.get_nodes("7", dest, node_from="phase", phase="deploy", runner_id=2,
                                    pass_through_env={"runnerId": 2}) is True
    assert dest.read_text() == NODES
    first = fake_console.log[-1].query
    assert first == {"jobId": "7", "runnerId": "2", "passThroughEnv": "{'runnerId': 2}",
                     "phase": "deploy", "nodeFrom": "phase", "lastModified": "0"}
    dest.write_text("local copy")  # newer than the console's copy -> 204
    assert console_client.get_nodes("7", dest, node_from="phase", phase="deploy") is False
    assert dest.read_text() == "local copy"
    assert float(fake_console.log[-1].query["lastModified"]) == dest.stat().st_mtime


def test_group_nodes_send_group_no(console_client: ConsoleClient, fake_console: FakeConsole,
                                   tmp_path: Path) -> None:
    fake_console.set_nodes("7", NODES, node_from="group", group_no=3)
    dest = JobDir(tmp_path).group_nodes(3)
    assert console_client.get_nodes("7", dest, node_from="group", group_no=3)
    assert fake_console.log[-1].query["groupNo"] == "3" and dest.name == "nodes-gp-3.json"


def test_broken_download_keeps_old_file_and_no_partial(console_client: ConsoleClient,
                                                       fake_console: FakeConsole, tmp_path: Path) -> None:
    fake_console.set_nodes("7", NODES * 50)
    fake_console.break_downloads = True
    fresh = tmp_path / "fresh" / "nodes.json"
    with pytest.raises(ConsoleUnavailable):
        console_client.get_nodes("7", fresh)
    assert not fresh.exists() and leftovers(fresh.parent) == []
    old = tmp_path / "nodes.json"
    old.write_text("old")
    os.utime(old, (0, 0))
    with pytest.raises(ConsoleUnavailable):
        console_client.get_nodes("7", old)
    assert old.read_text() == "old" and leftovers(tmp_path) == []


def test_204_without_local_copy_is_an_error(console_client: ConsoleClient, fake_console: FakeConsole,
                                            tmp_path: Path) -> None:
    fake_console.set_nodes("7", NODES, modified=0.0)
    with pytest.raises(ConsoleDownloadError):
        console_client.get_nodes("7", tmp_path / "nodes.json")


def test_fetch_file_caches_and_names(console_client: ConsoleClient, fake_console: FakeConsole,
                                     tmp_path: Path) -> None:
    fake_console.set_file("11", "app.tar.gz", b"\x00\x01payload", modified=1000.0)
    got = console_client.fetch_file(11, tmp_path)
    assert got.downloaded and got.name == "app.tar.gz"
    assert Path(got.path).read_bytes() == b"\x00\x01payload" and Path(got.path).name == "11"
    # a new client (new process) revalidates with lastModified and gets 204
    other = ConsoleClient(fake_console.url, USER, TOKEN, tenant="develop")
    again = other.fetch_file("11", tmp_path)
    assert not again.downloaded and again.name == "app.tar.gz"
    assert float(fake_console.log[-1].query["lastModified"]) > 1000.0
    calls = len(fake_console.log)
    console_client.fetch_file("11", tmp_path)  # memoised within a client
    assert len(fake_console.log) == calls


def test_fetch_file_broken_leaves_nothing(console_client: ConsoleClient, fake_console: FakeConsole,
                                          tmp_path: Path) -> None:
    fake_console.set_file("12", "big.bin", os.urandom(300_000))
    fake_console.break_downloads = True
    with pytest.raises(ConsoleUnavailable):
        console_client.fetch_file("12", tmp_path)
    assert not (tmp_path / "12").exists() and leftovers(tmp_path) == []


def test_fetch_file_rejects_path_like_id(console_client: ConsoleClient, tmp_path: Path) -> None:
    with pytest.raises(ConsoleDownloadError):
        console_client.fetch_file("../etc", tmp_path)


@pytest.mark.parametrize("as_json", [False, True])
def test_fetch_script_raw_and_json(console_client: ConsoleClient, fake_console: FakeConsole,
                                   tmp_path: Path, as_json: bool) -> None:
    fake_console.scripts["31"] = Script(b"#!/bin/sh\necho hi\n", version_id="77", name="hello",
                                        interpreter="bash", use_libs=("40", "41"), as_json=as_json)
    got = console_client.fetch_script("9", 31, tmp_path, operation_id="op_1")
    assert got is not None
    assert (got.version_id, got.file_name, got.use_libs, got.is_lib) == ("77", "hello.sh", ["40", "41"], False)
    path = Path(got.path)
    assert path == tmp_path / "77.hello.sh" and path.read_bytes() == b"#!/bin/sh\necho hi\n"
    assert path.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "77.hello.sh.lib").read_text() == "40,41"
    q = fake_console.log[-1].query
    assert q["operationId"] == "op_1" and q["acceptStream"] == "True" and "scriptVersionId" not in q
    assert console_client.fetch_script("9", 31, tmp_path, version_id="77") is None


def test_script_file_name_table() -> None:
    assert script_file_name("x", "perl", is_lib=True) == "x.pm"
    assert script_file_name("x.py", "python", is_lib=False) == "x.py"
    assert script_file_name("pkg", "package", is_lib=False) == "pkg.tar"


def test_get_account_and_mongodb_conf(console_client: ConsoleClient, fake_console: FakeConsole) -> None:
    fake_console.responses["getAccount"] = lambda body: "{ENCRYPTED}ab" if body["accountId"] == 3 else None
    assert console_client.get_account("1", 5, "h", 22, "root", 3, "ssh") == "{ENCRYPTED}ab"
    assert fake_console.log[-1].body == {"jobId": "1", "resourceId": 5, "host": "h", "port": 22,
                                         "username": "root", "accountId": 3, "protocol": "ssh"}
    fake_console.mongodb = {"host": "m1:27017,m2:27017", "option": "authSource=admin",
                            "database": "autoexec", "username": "u", "passwordPlain": "pw-secret"}
    conf = console_client.get_mongodb_conf()
    assert conf.url == "mongodb://m1:27017,m2:27017/?authSource=admin"
    assert "pw-secret" not in repr(conf)


def test_multipart_upload_signed_with_empty_body(console_client: ConsoleClient, fake_console: FakeConsole,
                                                 tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("data")
    fake_console.responses["uploadFile"] = {"id": 99}
    assert console_client.upload_file(f) == {"id": 99}
    assert fake_console.log[-1].path == "/neatlogic/api/binary/file/upload"
