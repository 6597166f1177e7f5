"""Custom scripts by scriptId: versioned files, links, libraries and the 204 path, laid out as the original does."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from autoexec.console.client import ConsoleClient
from autoexec.console.errors import ConsoleDownloadError
from autoexec.console.scripts import ScriptStore
from tests.fake_console import FakeConsole, Script


def test_script_and_its_libraries_are_stored_with_version_links(
        tmp_path: Path, console_client: ConsoleClient, fake_console: FakeConsole) -> None:
    fake_console.scripts["7"] = Script(b"echo main\n", "31", "deploy", use_libs=("8",))
    fake_console.scripts["8"] = Script(b"lib8\n", "40", "common", is_lib=True, use_libs=("9",))
    fake_console.scripts["9"] = Script(b"lib9\n", "41", "base", is_lib=True, use_libs=("8",))  # a cycle
    got = ScriptStore(console_client, "1").get("7", "custom_7_deploy", tmp_path, "deploy.sh")
    assert got.path == tmp_path / "deploy.sh" and got.path.read_bytes() == b"echo main\n"
    assert os.readlink(tmp_path / "7") == "31.deploy.sh" and os.readlink(tmp_path / "custom_7_deploy") == "31.deploy.sh"
    assert (tmp_path / "31.deploy.sh.lib").read_text() == "8"
    assert sorted(p.name for p in got.libs) == ["base.sh", "common.sh"]
    assert all(p.read_bytes().startswith(b"lib") for p in got.libs)


def test_unchanged_script_costs_one_204_in_a_new_process(
        tmp_path: Path, console_client: ConsoleClient, fake_console: FakeConsole) -> None:
    fake_console.scripts["7"] = Script(b"v1\n", "31", "deploy")
    ScriptStore(console_client, "1").get("7", "op", tmp_path, "deploy.sh")
    fake_console.log.clear()
    again = ScriptStore(console_client, "1").get("7", "op", tmp_path, "deploy.sh")
    assert again.path.read_bytes() == b"v1\n"
    [call] = fake_console.log
    assert call.query["scriptVersionId"] == "31"
    fake_console.scripts["7"] = Script(b"v2\n", "32", "deploy")  # a new version replaces the links
    newer = ScriptStore(console_client, "1").get("7", "op", tmp_path, "deploy.sh")
    assert newer.path.read_bytes() == b"v2\n" and (tmp_path / "31.deploy.sh").read_bytes() == b"v1\n"


def test_package_scripts_are_extracted_safely(
        tmp_path: Path, console_client: ConsoleClient, fake_console: FakeConsole) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("pkg/run.sh", b"echo pkg\n"), ("../escape.txt", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    fake_console.scripts["5"] = Script(buf.getvalue(), "12", "bundle", interpreter="package")
    with pytest.raises(ConsoleDownloadError):  # the archive tries to leave the script dir
        ScriptStore(console_client, "1").get("5", "op", tmp_path / "s", "bundle.tar")
    assert not (tmp_path / "escape.txt").exists()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("pkg/run.sh")
        info.size = 9
        tar.addfile(info, io.BytesIO(b"echo pkg\n"))
    fake_console.scripts["5"] = Script(buf.getvalue(), "13", "bundle", interpreter="package")
    ScriptStore(console_client, "1").get("5", "op", tmp_path / "s", "bundle.tar")
    assert (tmp_path / "s/pkg/run.sh").read_bytes() == b"echo pkg\n"


def test_missing_script_is_an_error_naming_it(
        tmp_path: Path, console_client: ConsoleClient, fake_console: FakeConsole) -> None:
    with pytest.raises(Exception, match="script not found"):
        ScriptStore(console_client, "1").get("404", "op", tmp_path, "x.sh")
