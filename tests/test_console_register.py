from __future__ import annotations

import io
import json
from pathlib import Path

from autoexec.console.client import ConsoleClient
from autoexec.console.register import discover_tools, normalise_op_type, register_tools
from tests.fake_console import FakeConsole


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
    assert normalise_op_type("local", "localremote") == "runner_target"
    assert normalise_op_type("local", "local") == "runner"
    assert normalise_op_type("local", None) == "runner"
    assert normalise_op_type("local", "sqlfile") == "sqlfile"
    assert normalise_op_type("remote", "runner") == "target"


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
    found = {(t.kind, t.op_name): t.path for t in discover_tools([home, bundled])}
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
