"""Per node, per op: resolve references, decrypt secrets, render argv, mask what gets logged."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autoexec.models.params import Operation
    from autoexec.ops.nodectx import NodeContext


@dataclass
class Prepared:
    argv: list[str] = field(default_factory=list)
    masked: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    file_paths: list[str] = field(default_factory=list)
    has_file: bool = False
    error: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    """Resolved (and decrypted) option values, for native ops that run inside the runner."""
    arguments: list[str] = field(default_factory=list)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def prepare_arguments(ctx: "NodeContext", op: "Operation", remote: bool) -> Prepared:
    argv: list[str] = []
    options = {k: _text(v) for k, v in op.opt.items() if v not in (None, "")}
    arguments = [_text(a.get("value")) for a in op.arg or []]
    for key, value in options.items():
        argv += [f"-{key}" if len(key) == 1 else f"--{key}", value]
    argv += arguments
    return Prepared(argv=argv, masked=" ".join(argv), inputs={"options": op.opt, "arguments": op.arg or []},
                    options=options, arguments=arguments)
