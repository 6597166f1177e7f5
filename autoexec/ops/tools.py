"""How an operation's program starts: a tool's argv, a custom script written and launched (the
tool itself is found by :mod:`autoexec.ops.toolpath`)."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from autoexec.jobdir.layout import safe_name
from autoexec.jobdir.store import file_lock

if TYPE_CHECKING:
    from autoexec.models.params import Operation
    from autoexec.ops.nodectx import NodeContext


EXTENSIONS = {"package": ".tar", "perl": ".pl", "python": ".py", "ruby": ".rb", "cmd": ".bat",
              "powershell": ".ps1", "vbscript": ".vbs", "bash": ".sh", "ksh": ".sh", "csh": ".sh",
              "sh": ".sh", "javascript": ".js"}

# How a script file is started. Local launches no longer depend on a shebang and exec bit (the
# original's inline scripts were not executable); ``python`` means python3 because current targets rarely ship a ``python`` binary.
LAUNCHERS = {"bash": ["bash"], "sh": ["sh"], "ksh": ["ksh"], "csh": ["csh"], "perl": ["perl"],
             "python": ["python3"], "ruby": ["ruby"], "javascript": ["node"], "powershell": ["pwsh", "-File"]}

_PYTHON = re.compile(r"python(3(\.\d+)?)?")


def _first_line(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.readline(512)
    except OSError:
        return b""


def python_shebang_flags(path: Path) -> list[str] | None:
    """The interpreter flags of a ``#!/usr/bin/python3 -u``-style first line, or ``None`` when the
    file does not start with a Python shebang (also through ``/usr/bin/env``)."""
    first = _first_line(path)
    if not first.startswith(b"#!"):
        return None
    parts = first[2:].decode("utf-8", "replace").split()
    if parts and os.path.basename(parts[0]) == "env":
        parts = [p for p in parts[1:] if not p.startswith("-")][:1] + parts[2:]
    if not parts or not _PYTHON.fullmatch(os.path.basename(parts[0])):
        return None
    return parts[1:]


def local_tool_argv(tool: Path) -> list[str]:
    """A runner-side tool runs by its shebang, as the original's ``exec <tool>`` through ``sh`` did,
    with two rules of that: a text file without ``#!`` runs as a ``sh`` script (what ``sh`` does
    when ``exec`` meets one), and Python tools run on autoexec's own interpreter (the original's
    ``#!/usr/bin/python3`` tools found their packages, ``plib``, beside that interpreter; here the
    packages they need come with autoexec's install)."""
    first = _first_line(tool)
    if first and not first.startswith((b"#!", b"\x7fELF")):
        return ["/bin/sh", str(tool)]
    flags = python_shebang_flags(tool)
    return [str(tool)] if flags is None else [sys.executable, *flags, str(tool)]


def script_file_name(op: "Operation") -> str:
    base = op.sub_name if op.opName.isascii() else op.opId.rsplit("_", 1)[-1]
    ext = EXTENSIONS.get((op.interpreter or "").lower(), "")
    name = safe_name(base)
    return name if not ext or name.endswith(ext) else name + ext


_written: dict[Path, bytes] = {}
"""Script file -> what this process last wrote (or found) there."""


def write_inline_script(ctx: "NodeContext", op: "Operation") -> Path:
    """Written once per content (atomically, under a lock) and made executable. Every node of a
    phase runs the same script: after the first, this process knows it is in place (and only
    checks it still exists)."""
    content = (op.scriptContent or "").encode("utf-8")
    path = ctx.jobdir.script_dir(op.bundle) / script_file_name(op)
    if _written.get(path) == content and os.path.exists(path):
        return path
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    with file_lock(path):
        try:
            if path.read_bytes() == content:
                _written[path] = content
                return path
        except FileNotFoundError:
            pass
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(content)
        os.chmod(tmp, 0o700)
        os.replace(tmp, path)
    _written[path] = content
    return path


def script_argv(interpreter: str | None, script: Path, remote: bool = False) -> list[str]:
    launcher = LAUNCHERS.get((interpreter or "").lower())
    if launcher == ["python3"] and not remote:
        launcher = [sys.executable]  # as runner-side Python tools: autoexec's interpreter and packages
    target = str(script) if not remote else (script.name if script.name.startswith(("/", ".")) else f"./{script.name}")
    if launcher is None:
        return [target]
    if remote and launcher[0] in ("bash", "sh", "ksh", "csh"):
        return [launcher[0], "-l", script.name]  # as the original: a login shell sees the user's profile
    return [*launcher, script.name if remote else str(script)]
