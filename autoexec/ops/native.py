"""Native operations run inside the runner process (``native/<x>``), with the original's defects fixed:
``extractprestepstatus`` global scope works, ``hidden`` is honoured, ``export`` sends isHidden."""
from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Any, Callable

from autoexec.models.flags import is_true
from autoexec.models.status import Status
from autoexec.ops.outcome import OpOutcome, fail_op, record_inputs
from autoexec.ops.prepare import prepare_arguments

if TYPE_CHECKING:
    from autoexec.models.params import Operation
    from autoexec.ops.nodectx import NodeContext

NATIVE_IN_PROCESS = {"echo", "export", "setenv", "updategparam", "failkeys", "failjob", "extractprestepstatus"}


def run_native(ctx: "NodeContext", op: "Operation") -> OpOutcome:
    prepared = prepare_arguments(ctx, op, remote=False)
    if prepared.error:
        return fail_op(ctx, prepared.error)
    record_inputs(ctx, op, prepared)  # native ops have input records too, as under the original
    handler: Callable[..., OpOutcome] = _HANDLERS[op.sub_name]
    return handler(ctx, op, prepared.options, prepared.arguments)


def _echo(ctx: "NodeContext", op: "Operation", options: dict[str, str], args: list[str]) -> OpOutcome:
    ctx.log.line("".join(args) if args else options.get("text", ""))
    return OpOutcome(final=Status.SUCCEED, exit_code=0)


def _failjob(ctx: "NodeContext", op: "Operation", options: dict[str, str], args: list[str]) -> OpOutcome:
    message = "".join(args) or options.get("message", "") or "failed by native/failjob"
    ctx.log.line(f"ERROR: {message}")
    return OpOutcome(final=Status.FAILED, exit_code=1, message=message)


def _set_env(ctx: "NodeContext", name: str, value: str, scope: str, hidden: bool) -> None:
    """Scope ``global``: a job variable (stored, exported to the console: ``JobEnv`` scope
    ``global``); any other scope: the node's own ``nodeEnv``."""
    if scope == "global":
        ctx.rt.env.set(name, value, hidden=hidden, scope="global")
    else:
        changes: dict[str, Any] = {"nodeEnv": {name: value}}
        if hidden:
            changes["hiddenNodeEnv"] = {name: 1}
        ctx.output.update(changes)


def _setenv(ctx: "NodeContext", op: "Operation", options: dict[str, str], args: list[str]) -> OpOutcome:
    name, value = options.get("name", ""), options.get("value", "")
    scope = options.get("scope", "node") or "node"
    if not name:
        return fail_op(ctx, "native/setenv needs option name")
    if "$(" in value:
        # Command substitution, as the original: the job author already runs arbitrary tools,
        # so this is evaluated by /bin/sh in the job dir, bounded in time.
        try:
            done = subprocess.run(["/bin/sh", "-c", f'printf %s "{value}"'], cwd=ctx.jobdir.root,
                                  capture_output=True, text=True, timeout=60, env=ctx.rt.env.snapshot())
        except subprocess.TimeoutExpired:
            ctx.log.line(f"ERROR: native/setenv {name}: command substitution timed out")
            return OpOutcome(final=Status.FAILED, message="setenv timed out")
        value = done.stdout.strip()
    hidden = is_true(options.get("hidden"))
    _set_env(ctx, name, value, scope, hidden)
    ctx.log.line(f"INFO: Set {scope} env {name}={'******' if hidden else value}")
    return OpOutcome(final=Status.SUCCEED, exit_code=0)


def _export(ctx: "NodeContext", op: "Operation", options: dict[str, str], args: list[str]) -> OpOutcome:
    for name in args:
        value = ctx.lookup_variable(name)
        if value is None:
            ctx.log.line(f"WARN: Environment variable {name} not defined, not exported.")
            continue
        ctx.log.line(f"INFO: Execute -> native/export {name}")
        ctx.rt.notifier.export_env(name=name, value=value, hidden=False)
    return OpOutcome(final=Status.SUCCEED, exit_code=0)


def _updategparam(ctx: "NodeContext", op: "Operation", options: dict[str, str], args: list[str]) -> OpOutcome:
    key = options.get("name") or options.get("key") or ""
    if not key:
        return fail_op(ctx, "native/updategparam needs option name")
    ctx.rt.notifier.update_global_param(key=key, value=options.get("value", ""))
    ctx.log.line(f"INFO: Update global param {key}.")
    return OpOutcome(final=Status.SUCCEED, exit_code=0)


def _failkeys(ctx: "NodeContext", op: "Operation", options: dict[str, str], args: list[str]) -> OpOutcome:
    from autoexec.ops.failkeys import FailKeys

    try:
        matcher = FailKeys(patterns=[a for a in args if a], operator=options.get("operator", "or") or "or",
                           exclude=options.get("exclude") or None, fail_ignore=op.fail_ignore)
    except ValueError as exc:
        return fail_op(ctx, str(exc))
    ctx.fail_matcher = matcher
    ctx.log.line(f"INFO: Fail patterns installed: {len(matcher.patterns)} ({matcher.operator}).")
    return OpOutcome(final=Status.SUCCEED, exit_code=0)


def _extractprestepstatus(ctx: "NodeContext", op: "Operation", options: dict[str, str], args: list[str]) -> OpOutcome:
    name = options.get("envname") or options.get("name") or ""
    if not name:
        ctx.log.line("ERROR: native/extractprestepstatus needs option envname")
        return OpOutcome(final=Status.FAILED, message="needs option envname")
    _set_env(ctx, name, ctx.prev_op_status, options.get("scope", "node") or "node", False)
    ctx.log.line(f"INFO: {name}={ctx.prev_op_status}")
    return OpOutcome(final=Status.SUCCEED, exit_code=0)


_HANDLERS = {"echo": _echo, "export": _export, "setenv": _setenv, "updategparam": _updategparam,
             "failkeys": _failkeys, "failjob": _failjob, "extractprestepstatus": _extractprestepstatus}
