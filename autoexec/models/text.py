"""What text from a params or nodes file may contain, checked once when the file is read.

Strings from these files end up as argv items, environment entries and file names. The kernel
refuses a NUL in any of them, and a lone surrogate (``"\\ud800"`` is valid JSON, not valid
Unicode) cannot be encoded at all: without this check both fail late, inside a node, with a
Python traceback. A file name component is limited to 255 bytes by the usual file systems, so
names that become one are limited to :data:`MAX_NAME_BYTES` (room left for the suffixes the job
directory adds, such as ``.hislog`` or ``nodes-ph-…json``).
"""
from __future__ import annotations

import json
import re
from typing import Any

from autoexec.conf.errors import AutoexecError

#: Longest name (UTF-8 bytes) that becomes part of a file name: 255 per component, minus suffixes.
MAX_NAME_BYTES = 200
#: Deepest JSON nesting accepted; Python's parser would otherwise stop with a RecursionError.
MAX_JSON_DEPTH = 100

_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")


class TextProblem(AutoexecError, ValueError):
    """``where`` is a field path such as ``runFlow[0].phases[1].phaseName`` (may be empty)."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where
        self.problem = problem


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be used as argv, environment or file name text, or ``None``."""
    bad = _BAD_CHAR.search(value)
    if bad is None:
        return None
    if bad.group() == "\x00":
        return f"contains a NUL character at offset {bad.start()}"
    return f"is not valid Unicode (lone surrogate \\u{ord(bad.group()):04x} at offset {bad.start()})"


def check_text(value: str) -> str:
    """For pydantic validators: raise ``ValueError`` naming the problem."""
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(f"text {problem}")
    return value


def check_name(value: str, what: str = "name") -> str:
    """A name that becomes a file name: valid text, not empty, at most :data:`MAX_NAME_BYTES`."""
    check_text(value)
    size = len(value.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise ValueError(f"{what} is {size} bytes long; it becomes a file name, so at most "
                         f"{MAX_NAME_BYTES} bytes (UTF-8) are allowed")
    return value


def _path(parent: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def check_tree(data: Any, where: str = "") -> None:
    """Every string (keys too) in a parsed JSON document: raise :class:`TextProblem` at the first
    bad one. Iterative, so deep documents cannot exhaust the stack."""
    stack: list[tuple[Any, str]] = [(data, where)]
    while stack:
        value, at = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem is not None:
                raise TextProblem(at, problem)
        elif isinstance(value, dict):
            for key, item in value.items():
                problem = text_problem(key)
                if problem is not None:
                    raise TextProblem(at, f"key {key.encode('utf-8', 'backslashreplace').decode()!r} {problem}")
                stack.append((item, _path(at, key)))
        elif isinstance(value, list):
            stack.extend((item, _path(at, i)) for i, item in enumerate(value))


def json_depth_problem(text: str, limit: int = MAX_JSON_DEPTH) -> str | None:
    """Nesting deeper than ``limit`` (brackets outside strings), checked before ``json.loads``
    so a hostile file gets one line instead of a RecursionError. ``None`` when fine."""
    if text.count("[") + text.count("{") <= limit:
        return None
    depth = 0
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                line = text.count("\n", 0, match.start()) + 1
                return f"line {line}: JSON nested deeper than {limit} levels"
        elif token in "]}":
            depth -= 1
    return None


# Strings (skipped as a whole, escapes included) and brackets.
_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def loads_checked(text: str) -> Any:
    """``json.loads`` that refuses too-deep nesting with a ``ValueError`` instead of a RecursionError."""
    problem = json_depth_problem(text)
    if problem is not None:
        raise ValueError(problem)
    try:
        return json.loads(text)
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
