"""``autoexec --register TENANT``: publish the tool descriptors to the console.

Differences from the original, on purpose: the exit code reflects the outcome (the original
always exited 1); tools in ``$AUTOEXEC_HOME/plugins`` override bundled tools of the
same opName (a later dir's descriptor that an earlier executable hides is not sent: it may not
describe what runs); and when any registration failed the console's clean-up of "tools not in this
import" is skipped, because it would delete the tools that merely failed to register; a
descriptor the runner's model refuses (:mod:`autoexec.ops.descriptor`) is not sent, its line names
the file and the field.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from autoexec.console.errors import ConsoleError
from autoexec.ops.descriptor import DescriptorError, discover_tools


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
            raw, desc = tool.load()
        except DescriptorError as exc:  # names the file and the field
            say(f"ERROR: Register tool:{tool.tree} {tool.op_name} failed, {exc}")
            failures += 1
            continue
        if not desc.enabled:
            continue
        say(f"INFO: Begin to register tool:{tool.tree} {tool.op_name}...")
        # the descriptor as written (the console owns the format), with what the runner decides
        payload = dict(raw, opName=tool.op_name, importTime=import_time, opType=desc.opType.value)
        try:
            client.register_tool(payload, tenant=tenant)
        except ConsoleError as exc:
            say(f"ERROR: Register tool:{tool.tree} {tool.op_name} failed, {exc.message}")
            failures += 1
            continue
        say(f"INFO: Register tool:{tool.tree} {tool.op_name} success.")

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
