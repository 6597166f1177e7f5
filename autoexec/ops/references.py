"""``${name}`` / ``$word`` references inside option and argument values.

Lookup order: job ``opt``, ``globalOpt``, the node's ``nodeEnv``, the runner environment (braced
form only, so a script's ``$HOME`` is left for its own shell), then earlier ops' outputs. One
left-to-right pass: substituted values are never re-scanned. Rules: docs/design.md."""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autoexec.conf.errors import AutoexecError

__all__ = ["RefContext", "UnresolvedReference", "resolve", "to_text", "references_in"]

# ``${ ... }`` with no braces inside, or ``$word``. Alternation order matters: braced form first.
_REF = re.compile(r"\$\{([^{}]*)\}|\$(\w+)", re.ASCII)

_MISSING = object()


class UnresolvedReference(AutoexecError, ValueError):
    """A reference to an op output that does not exist; the op must fail with this message."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(f"Can not resolve param ${{{ref}}}")


@dataclass(frozen=True)
class RefContext:
    """Everything a reference may point at, built once per node per op by the executor.

    ``environ`` defaults to the live ``os.environ`` so the executor only passes a snapshot when it
    wants one. Output maps have the shape of the node output documents: ``{opId: {key: value}}``.
    """

    opt: Mapping[str, Any] = field(default_factory=dict)
    global_opt: Mapping[str, Any] = field(default_factory=dict)
    node_env: Mapping[str, Any] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    node_output: Mapping[str, Any] = field(default_factory=dict)
    runner_output: Mapping[str, Any] = field(default_factory=dict)

    def lookup(self, name: str, *, braced: bool = True) -> Any:
        """Value for ``name`` or the module sentinel when unknown; raises for missing outputs."""
        sources: tuple[Mapping[str, Any], ...] = (self.opt, self.global_opt, self.node_env)
        if braced:
            sources += (self.environ,)
        for source in sources:
            value = source.get(name)
            if value is not None:
                return value
        if not braced or "." not in name:
            return _MISSING
        return self._output_ref(name)

    def _output_ref(self, name: str) -> Any:
        if name.count(".") >= 2:
            op_id, key = name.split(".", 1)[1].rsplit(".", 1)
        else:
            op_id, key = name.split(".", 1)
            if op_id not in self.node_output and op_id not in self.runner_output:
                return _MISSING  # e.g. ``${a.b}`` that is not an op reference: keep verbatim
        for outputs in (self.node_output, self.runner_output):
            op_out = outputs.get(op_id)
            if isinstance(op_out, Mapping) and op_out.get(key) is not None:
                return op_out[key]
        raise UnresolvedReference(name)


def to_text(value: Any) -> str:
    """The string form every option value takes once resolved: non-strings JSON-encoded, non-ASCII kept."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def references_in(value: str) -> list[str]:
    """Names referenced in ``value``, in order (braced names stripped of surrounding spaces)."""
    return [(m.group(1).strip() if m.group(1) is not None else m.group(2)) for m in _REF.finditer(value)]


def resolve(value: Any, ctx: RefContext) -> str:
    """Substitute every reference in ``value``; ``None`` becomes ``""``.

    Spaces inside braces are ignored on both sides (``${ name }``); the original kept trailing
    spaces as part of the name, which could never match anything useful.
    """
    text = to_text(value)
    if "$" not in text:
        return text
    parts: list[str] = []
    pos = 0
    for match in _REF.finditer(text):
        braced = match.group(1) is not None
        name = match.group(1).strip() if braced else match.group(2)
        if not name:
            continue
        found = ctx.lookup(name, braced=braced)
        if found is _MISSING:
            continue
        parts.append(text[pos:match.start()])
        parts.append(to_text(found))
        pos = match.end()
    if not parts:
        return text
    parts.append(text[pos:])
    return "".join(parts)
