"""Naming the module a failed tool could not load.

A tool that lacks a Perl or Python module dies with the interpreter's message somewhere in its
output (``Can't locate Crypt/RC4.pm in @INC ...``, ``ModuleNotFoundError: No module named
'pymongo'``), often after lines of its own and always followed by a bare "exited with status 2".
After a tool fails, the tail of the node log written since the op started is searched for those
messages and one line naming the module and the fix is added. Only failed ops pay for it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterable

_PERL = re.compile(r"Can't locate (\S+\.pm) in @INC")
_PYTHON = re.compile(r"(?:ModuleNotFoundError|ImportError): No module named '?([A-Za-z_][\w.]*)'?")
_OP_START = "INFO: Execute -> "
_TAIL_BYTES = 64 * 1024

# Modules of the tool library itself (bundled with autoexec or shipped in a plugin tree's lib).
TOOL_LIBRARY = frozenset({"AutoExecUtils", "ServerAdapter", "AutoExecError", "TagentClient"})


@dataclass(frozen=True)
class MissingModule:
    language: str  # "perl" or "python"
    name: str  # Crypt::RC4 / pymongo.errors


def find_missing_module(lines: Iterable[str]) -> MissingModule | None:
    """The first module a tool's output says it could not load."""
    for line in lines:
        if "Can't locate " in line:
            match = _PERL.search(line)
            if match:
                return MissingModule("perl", match.group(1)[:-3].replace("/", "::"))
        elif "No module named" in line:
            match = _PYTHON.search(line)
            if match:
                return MissingModule("python", match.group(1))
    return None


def advice(missing: MissingModule, on_target: bool) -> str:
    where = "on the target host" if on_target else "on the runner"
    top = missing.name.split("::" if missing.language == "perl" else ".")[0]
    if top in TOOL_LIBRARY or missing.name in TOOL_LIBRARY:
        return (f"ERROR: The tool could not load {missing.name}, a module of the tool library: check that the "
                f"plugin tree's lib directory is in place next to the tool's directory.")
    if missing.language == "perl":
        package = "lib" + missing.name.lower().replace("::", "-") + "-perl"
        return (f"ERROR: The tool lacks the Perl module {missing.name}: install it {where} (Debian usually "
                f"packages it as {package}: apt-get install {package}) or add its directory to PERL5LIB.")
    return (f"ERROR: The tool lacks the Python module {missing.name}: install the package providing "
            f"'{top}' {where} for the python3 the tool runs with (pip install ...), or add its directory "
            f"to PYTHONPATH.")


def _op_tail(log_path: str | os.PathLike[str]) -> list[str]:
    """Lines of the node log from the last op start on (within the last 64 KiB)."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - _TAIL_BYTES))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    lines = text.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        if _OP_START in lines[index]:
            return lines[index + 1:]
    return lines


def missing_module_notice(log_path: str | os.PathLike[str], on_target: bool) -> str | None:
    """The advice line for the failed op whose output ends the node log, if it lacked a module."""
    missing = find_missing_module(_op_tail(log_path))
    return advice(missing, on_target) if missing else None
