from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from autoexec.console.client import ConsoleClient
from autoexec.console.register import register_tools
from autoexec.models.optype import OpType
from autoexec.ops.descriptor import discover_tools
from tests.fake_console import TOKEN, USER, FakeConsole


def tool(root: Path, kind: str, bundle: str, name: str, desc: dict, executable: bool = True) -> None:
    d = root / kind / bundle
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.json").write_text(json.dumps(desc))
    if executable:
        (d / name).write_text("#!/bin/sh\n")


def layout(tmp_path: Path) -> tuple[Path, Path]:
    home, bundled = tmp_path / "home", tmp_path / "bundled"
    tool(bundled, "local", "basic", "echo", {"opDesc": "bundled echo", "opType": "localremote"})
    tool(bundled, "local", "basic", "plain", {"opDesc": "p"})  # opType missing -> runner
    tool(bundled, "local", "basic", "off", {"opDesc": "x", "enabled": 0})
    tool(bundled, "local", "basic", "nofile", {"opDesc": "x"}, executable=False)  # not a tool
    tool(bundled, "local", "native", "sleep", {"opDesc": "n", "opType": "native"}, executable=False)
    tool(bundled, "remote", "os", "osinfo", {"opDesc": "r", "opType": "runner"})
    tool(home, "local", "basic", "echo", {"opDesc": "home echo", "opType": "local"})
    return home, bundled


def test_op_type_mapping() -> None:
    assert OpType.for_tree("local", "localremote") == "runner_target"
    assert OpType.for_tree("local", "local") == "runner"
    assert OpType.for_tree("local", None) == "runner"
    assert OpType.for_tree("local", "sqlfile") == "sqlfile"
    assert OpType.for_tree("remote", "runner") == "target"


def test_register_success(tmp_path: Path, console_client: ConsoleClient, fake_console: FakeConsole) -> None:
    home, bundled = layout(tmp_path)
    out = io.StringIO()
    assert register_tools(console_client, "tenantA", [home, bundled], out=out, clock=lambda: 1700000000.9) == 0
    regs = {r.body["opName"]: r.body for r in fake_console.callbacks("registerTool")}
    assert set(regs) == {"basic/echo", "basic/plain", "native/sleep", "os/osinfo"}
    assert regs["basic/echo"]["opDesc"] == "home echo" and regs["basic/echo"]["opType"] == "runner"
    assert regs["basic/plain"]["opType"] == "runner"
    assert regs["native/sleep"]["opType"] == "native"
    assert regs["os/osinfo"]["opType"] == "target"
    assert all(b["importTime"] == 1700000000 for b in regs.values())
    clean = fake_console.callbacks("cleanNativeTools")
    assert [c.body for c in clean] == [{"importTime": 1700000000}]
    assert fake_console.log[-1].api == "cleanNativeTools"
    assert all(r.tenant == "tenantA" for r in fake_console.log)
    lines = out.getvalue().splitlines()
    assert "INFO: Begin to register tool:local basic/echo..." in lines
    assert "INFO: Register tool:remote os/osinfo success." in lines
    assert lines[-1] == "INFO: Clean discarded tools success."


def test_home_override_applies_without_bundled(tmp_path: Path) -> None:
    home, bundled = layout(tmp_path)
    found = {(t.tree, t.op_name): t.path for t in discover_tools([home, bundled])}
    assert found[("local", "basic/echo")].is_relative_to(home)
    assert ("local", "basic/nofile") not in found


def test_failure_returns_1_and_skips_clean(tmp_path: Path, console_client: ConsoleClient,
                                          fake_console: FakeConsole) -> None:
    home, bundled = layout(tmp_path)
    fake_console.responses["registerTool"] = lambda body: (
        (200, {"Status": "ERROR", "Message": "opDesc invalid"}) if body["opName"] == "basic/plain" else {})
    out = io.StringIO()
    assert register_tools(console_client, "t", [home, bundled], out=out) == 1
    assert "ERROR: Register tool:local basic/plain failed, registerTool: Status ERROR: opDesc invalid" \
        in out.getvalue().splitlines()
    assert len(fake_console.callbacks("registerTool")) == 4  # the others were still registered
    assert fake_console.callbacks("cleanNativeTools") == []


def test_console_down_returns_1(tmp_path: Path, console_client: ConsoleClient, fake_console: FakeConsole) -> None:
    home, bundled = layout(tmp_path)
    fake_console.set_mode("down")
    out = io.StringIO()
    assert register_tools(console_client, "t", [home, bundled], out=out) == 1
    assert out.getvalue().count("ERROR: Register tool:") == 4


def test_malformed_descriptor_is_one_line_naming_file_and_field(
        tmp_path: Path, console_client: ConsoleClient, fake_console: FakeConsole) -> None:
    home, bundled = layout(tmp_path)
    tool(home, "local", "basic", "broken", {"opDesc": "b", "opType": "runner", "option": [{"name": "no opt"}]})
    tool(home, "local", "basic", "shell", {"opDesc": "s", "opType": "shell"})
    out = io.StringIO()
    assert register_tools(console_client, "t", [home, bundled], out=out) == 1
    lines = out.getvalue().splitlines()
    broken = home / "local/basic/broken.json"
    assert f"ERROR: Register tool:local basic/broken failed, {broken}: option[0].opt: Field required" in lines
    assert any(line.startswith(f"ERROR: Register tool:local basic/shell failed, {home / 'local/basic/shell.json'}: "
                               "opType: must be one of runner, target") for line in lines)
    regs = {r.body["opName"] for r in fake_console.callbacks("registerTool")}
    assert regs == {"basic/echo", "basic/plain", "native/sleep", "os/osinfo"}  # the refused ones are not sent
    assert fake_console.callbacks("cleanNativeTools") == []


def test_cli_register_refuses_malformed_descriptor_with_exit_1(tmp_path: Path, fake_console: FakeConsole) -> None:
    home = tmp_path / "home"
    tool(home / "plugins", "remote", "os", "osbad", {"opDesc": "x", "output": [{"opt": ""}]})
    (home / "conf").mkdir(parents=True)
    (home / "conf" / "config.ini").write_text(f"[server]\nserver.baseurl = {fake_console.url}\n"
                                              f"server.username = {USER}\nserver.password = {TOKEN}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOEXEC_")}
    env["AUTOEXEC_HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-m", "autoexec.cli.command", "--register", "t"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in proc.stdout.splitlines() if line.startswith("ERROR: Register tool:")]
    assert errors == [f"ERROR: Register tool:remote os/osbad failed, {home / 'plugins/remote/os/osbad.json'}: "
                      "output[0].opt: String should have at least 1 character"]
    assert "os/osbad" not in {r.body["opName"] for r in fake_console.callbacks("registerTool")}
