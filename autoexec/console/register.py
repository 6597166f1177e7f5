"""``autoexec --register TENANT``: publish the tool descriptors to the console.

Differences from the original, on purpose: the exit code reflects the outcome (the original
always exited 1); tools in ``$AUTOEXEC_HOME/plugins`` override bundled tools of the
same opName; and when any registration failed the console's clean-up of "tools not in this
import" is skipped, because it would delete the tools that merely failed to register.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from autoexec.console.errors import ConsoleError

KINDS = ("local", "remote")


@dataclass(frozen=True)
class ToolDescriptor:
    kind: str  # "local" or "remote": the plugins sub-directory
    op_name: str  # "<bundle>/<tool>"
    path: Path


def normalise_op_type(kind: str, op_type: Any) -> str:
    if kind == "remote":
        return "target"
    if op_type in (None, "", "local"):
        return "runner"
    if op_type == "localremote":
        return "runner_target"
    return str(op_type)


def discover_tools(plugin_dirs: Iterable[Path]) -> list[ToolDescriptor]:
    """Descriptors in registration order; the first plugin dir providing an opName wins."""
    found: dict[tuple[str, str], ToolDescriptor] = {}
    for root in plugin_dirs:
        for kind in KINDS:
            base = Path(root) / kind
            if not base.is_dir():
                continue
            for bundle in sorted(p for p in base.iterdir() if p.is_dir()):
                for desc in sorted(bundle.glob("*.json")):
                    tool = desc.stem
                    # same selection rule as the original: native bundle, "<bundle>..." names,
                    # or an executable next to the descriptor
                    if not (bundle.name == "native" or tool.startswith(bundle.name)
                            or (bundle / tool).exists()):
                        continue
                    op_name = f"{bundle.name}/{tool}"
                    found.setdefault((kind, op_name), ToolDescriptor(kind, op_name, desc))
    return sorted(found.values(), key=lambda t: (KINDS.index(t.kind), t.op_name))


def _enabled(desc: dict[str, Any]) -> bool:
    value = desc.get("enabled", 1)
    try:
        return int(value) != 0
    except (TypeError, ValueError):
        return value not in (False, "false", "False")


def register_tools(client: Any, tenant: str, plugin_dirs: Iterable[Path], *,
                   out: TextIO | None = None, clock: Callable[[], float] = time.time) -> int:
    """Register every enabled tool, then clean discarded ones; 0 = all succeeded, 1 = not."""
    out = out or sys.stdout
    import_time = int(clock())
    failures = 0

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    for tool in discover_tools(plugin_dirs):
        try:
            desc = json.loads(tool.path.read_text(encoding="utf-8"))
            if not isinstance(desc, dict):
                raise ValueError("descriptor is not a JSON object")
        except (OSError, ValueError) as exc:
            say(f"ERROR: Register tool:{tool.kind} {tool.op_name} failed, cannot read {tool.path}: {exc}")
            failures += 1
            continue
        if not _enabled(desc):
            continue
        say(f"INFO: Begin to register tool:{tool.kind} {tool.op_name}...")
        payload = dict(desc, opName=tool.op_name, importTime=import_time,
                       opType=normalise_op_type(tool.kind, desc.get("opType")))
        try:
            client.register_tool(payload, tenant=tenant)
        except ConsoleError as exc:
            say(f"ERROR: Register tool:{tool.kind} {tool.op_name} failed, {exc.message}")
            failures += 1
            continue
        say(f"INFO: Register tool:{tool.kind} {tool.op_name} success.")

    if failures:
        say(f"ERROR: {failures} tool(s) failed to register, discarded tools are not cleaned.")
        return 1
    try:
        client.clean_native_tools(import_time, tenant=tenant)
    except ConsoleError as exc:
        say(f"ERROR: Clean discarded tools failed, {exc.message}")
        return 1
    say("INFO: Clean discarded tools success.")
    return 0
