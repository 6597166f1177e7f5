"""Per node, per op: resolve references, decrypt secrets, render argv, mask what gets logged.

Glue between the executor and the pure rendering modules (:mod:`autoexec.ops.references`,
:mod:`autoexec.ops.render`); everything node- or job-specific is gathered here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autoexec.ops.references import RefContext, UnresolvedReference
from autoexec.ops.render import masked_cmdline, prepare_params, recorded_inputs, render_argv

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


def ref_context(ctx: "NodeContext") -> RefContext:
    rt = ctx.rt
    runner = rt.runner_output.data if rt.runner_output is not None else {}
    return RefContext(opt=rt.params.opt, global_opt=rt.params.globalOpt, node_env=ctx.node_env,
                      environ=rt.env.view(), node_output=ctx.output.data, runner_output=runner)


def prepare_arguments(ctx: "NodeContext", op: "Operation", remote: bool) -> Prepared:
    rt = ctx.rt
    services = rt.services

    def get_account(user: str, account_id: str, protocol: str) -> str | None:
        return services.account_password(ctx.node, user, account_id, protocol)

    try:
        params = prepare_params(op.opt, op.desc, op.arg, ref_context(ctx), decrypt=rt.decrypt,
                                fetch_file=services.file_name, get_account=get_account,
                                job_dir=str(rt.jobdir.root), op_name=op.opName)
    except UnresolvedReference as exc:
        return Prepared(error=str(exc))
    secret = [v.split("/", 1)[-1] if params.types.get(k) == "account" else v
              for k, v in params.options.items() if params.types.get(k) in ("password", "account")]
    secret += [v for t, v in params.arguments if t == "password"]
    if secret:
        rt.masker.add(secret)  # resolved references, console accounts: known only now
    for warning in params.warnings:
        ctx.log.line(warning)
    interpreter = op.interpreter if op.is_script else None
    return Prepared(
        argv=render_argv(params, interpreter=interpreter, remote=remote),
        masked=masked_cmdline(params, "", interpreter=interpreter, remote=remote).strip(),
        inputs=recorded_inputs(params),
        file_paths=list(params.file_paths),
        has_file=params.has_file,
        options=dict(params.options),
        arguments=[value for _, value in params.arguments],
    )
