"""What one operation ended with, and the two records every op kind shares (its ERROR line and its
recorded inputs): a module of their own so the native ops and the dispatcher both use them without
importing each other."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autoexec.jobdir.store import file_lock, read_json, write_json_atomic
from autoexec.models.params import Operation
from autoexec.models.status import Status
from autoexec.ops.nodectx import NodeContext
from autoexec.ops.prepare import Prepared


@dataclass
class OpOutcome:
    final: Status
    """``succeed``, ``failed``, ``ignored`` (set by the executor), ``paused`` (a stopped retry) or
    ``aborted``."""
    exit_code: int | None = None
    message: str = ""
    skipped: bool = False
    outputs: dict[str, Any] = field(default_factory=dict)
    failure_kind: str | None = None
    """A remote op's failure by kind (``FailureKind`` value); ``None`` for runner-side ops."""


def fail_op(ctx: NodeContext, message: str, code: int | None = None) -> OpOutcome:
    ctx.log.line(f"ERROR: {message}")
    return OpOutcome(final=Status.FAILED, exit_code=code, message=message)


def record_inputs(ctx: NodeContext, op: Operation, prepared: Prepared) -> None:
    """``input/<triple>.json`` gathers every op's inputs of the node across phases. A file lock,
    not only a thread lock: two invocations of one job (``--phases a`` and ``--phases b``) may run
    the same node at once."""
    path = ctx.paths.input
    with file_lock(path):
        current = read_json(path)
        current = current if isinstance(current, dict) else {}
        current[op.opId] = ctx.rt.masker.value(prepared.inputs)  # a node password in a text option too
        write_json_atomic(path, current, indent=4)
