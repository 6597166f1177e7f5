"""Where and how one operation runs: a runner child, a remote host, or inside the runner.

The placement rules of the original are kept, except where it failed a local-typed op on a
target node or silently skipped a non-local op on the runner node: an op that cannot run where its
phase puts it fails with a message saying why.
"""
from __future__ import annotations

import json
import os
import posixpath
import signal
from pathlib import Path
from typing import Any

from autoexec.jobdir.layout import safe_name, safe_relpath
from autoexec.models.optype import ExecKind, PluginTree
from autoexec.models.params import Operation
from autoexec.models.status import Status
from autoexec.ops.childenv import template_for
from autoexec.ops.nodectx import NodeContext
from autoexec.ops.outcome import OpOutcome, fail_op, record_inputs
from autoexec.ops.prepare import prepare_arguments
from autoexec.ops.toolerrors import missing_module_notice
from autoexec.ops.toolenv import owning_plugin_dir
from autoexec.ops.toolpath import ToolNotFound, find_tool
from autoexec.ops.tools import script_argv, write_inline_script
from autoexec.jobdir.store import ensure_dir, read_json, write_json_atomic
from autoexec.transports.base import FailureKind, RemoteOp, TransportTraits, Upload
from autoexec.transports.local import LocalProcess
from autoexec.transports.reap import NODE_KEY_ENV


def run_operation(ctx: NodeContext, op: Operation) -> OpOutcome:
    kind = op.kind
    on_runner = ctx.node.resourceId == 0
    if kind is ExecKind.NATIVE:
        from autoexec.ops.native import NATIVE_IN_PROCESS, run_native

        if op.sub_name in NATIVE_IN_PROCESS:
            return _finish(ctx, op, run_native(ctx, op))
        return _run_local(ctx, op, to_target=not on_runner)
    if on_runner and kind is not ExecKind.LOCAL:
        return fail_op(ctx, f"Operation {op.opId} of type {op.opType} cannot run on the runner node: phase "
                          f"{ctx.plan.name} runs on the runner because it is a runner phase or holds runner ops")
    if not on_runner and kind is ExecKind.LOCAL:
        return fail_op(ctx, f"Operation {op.opId} of type {op.opType} runs only on the runner, not on target "
                          f"node {ctx.node.host}")
    if kind is ExecKind.REMOTE:
        return _run_remote(ctx, op)
    return _run_local(ctx, op, to_target=(kind is ExecKind.LOCALREMOTE))


# --- local --------------------------------------------------------------------------------
def _run_local(ctx: NodeContext, op: Operation, to_target: bool) -> OpOutcome:
    rt = ctx.rt
    tool: Path | None = None
    try:
        if op.is_script:
            script = write_inline_script(ctx, op) if op.scriptContent else _fetch_script(ctx, op)
            command, plugin_dir = script_argv(op.interpreter, script), script.parent
        else:
            tool = find_tool(op.opName, PluginTree.LOCAL, rt.config.plugin_dirs).runnable()
            command, plugin_dir = [], tool.parent
    except (ToolNotFound, OSError) as exc:
        return fail_op(ctx, str(exc))
    prepared = prepare_arguments(ctx, op, remote=False)
    if prepared.error:
        return fail_op(ctx, prepared.error)
    record_inputs(ctx, op, prepared)
    spec = ctx.transport_spec if to_target else None
    if spec is not None and spec.traits.uses_password and not ctx.password:
        ctx.log.line(f"WARN: Can not find password for {ctx.node.username}@{ctx.node.host}:{ctx.node.protocolPort}, "
                     f"Please check the account settings of the node.")
    ctx.log.line(f"INFO: Execute -> {op.opName} {prepared.masked}".rstrip())
    template = template_for(ctx, plugin_dir, to_target)
    if tool is not None:
        command = template.tool_argv(tool)
    out_path = ctx.paths.op_output(op.opId)
    fresh = ensure_dir(os.path.dirname(out_path))
    env = template.render(ctx, op, out_path)
    ensure_dir(os.path.dirname(env["LIVEDATA_PATH"]))  # as the original: the node's livedata/ dir exists
    if not fresh:  # a directory just created holds no stale output
        try:
            os.unlink(out_path)
        except FileNotFoundError:
            pass
    try:
        proc = LocalProcess(command + prepared.argv, template.cwd, env, find_program=template.program,
                            output_charsets=rt.config.output_charsets)
    except OSError as exc:
        return fail_op(ctx, f"cannot start {op.opName}: {exc.strerror or exc}")
    token = rt.control.register(proc.kill)
    on_line, failed_by_log = _output_sink(ctx, op)
    try:
        try:
            ctx.status.set_op(op.opId, Status.RUNNING, proc.pid)
        except BaseException:
            proc.abandon()
            raise
        result = proc.stream(on_line, timeout=rt.config.max_exec_secs,
                             on_lines=ctx.log.lines if ctx.fail_matcher is None else None)
    finally:
        rt.control.unregister(token)
    if result.error:
        if result.killed and rt.control.aborting:
            ctx.log.line(f"INFO: Worker killed, pid:{result.pid}.")
            return OpOutcome(final=Status.ABORTED, message="aborted")
        return fail_op(ctx, f"{op.opName} {result.error}")
    failure = _tool_failure(ctx, op, result.exit_code, failed_by_log)
    if failure is not None:
        return failure
    data = read_json(out_path)
    if isinstance(data, dict):
        data = _collect_local_filepaths(ctx, op, data)
    return _finish(ctx, op, OpOutcome(final=Status.SUCCEED, exit_code=0), data)


def _collect_local_filepaths(ctx: NodeContext, op: Operation, data: dict[str, Any]) -> dict[str, Any]:
    """A local tool's ``filepath`` output outside the job dir is copied into
    ``output-op/<triple>/<opId>/`` so the job keeps it; values become job-relative paths."""
    import shutil

    root = ctx.jobdir.root.resolve()
    for key in _filepath_keys(op):
        value = data.get(key)
        if not isinstance(value, str) or not value:
            continue
        source = (ctx.jobdir.root / value).resolve()
        if not source.is_file():
            continue
        if not source.is_relative_to(root):
            dest = ctx.jobdir.op_output_dir(ctx.triple) / safe_relpath(op.opId) / source.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
            source = dest.resolve()
        data[key] = str(source.relative_to(root))
    return data


def _fetch_script(ctx: NodeContext, op: Operation) -> Path:
    """From the console by ``scriptId`` (without a console: the op fails, saying how to name one)."""
    return ctx.rt.services.fetch_script(op)


# --- remote -------------------------------------------------------------------------------
def _run_remote(ctx: NodeContext, op: Operation) -> OpOutcome:
    rt, node = ctx.rt, ctx.node
    spec = ctx.transport_spec
    if spec is None:
        return fail_op(ctx, f"node {node.host} protocol {node.protocol!r} cannot run target operation {op.opId} "
                          f"(needs {rt.transports.names()})")
    if ctx.credentials_error:
        return fail_op(ctx, ctx.credentials_error)
    if spec.traits.needs_secret and not ctx.password and not ctx.private_key:
        return fail_op(ctx, f"Can not find password for {ctx.username}@{node.host}:{node.protocolPort}")
    dir_name = f"autoexec-{safe_name(rt.job_id)}-{node.resourceId}-{ctx.plan.index}"
    root = spec.traits.remote_root(dir_name)
    uploads: list[Upload] = []
    workdir = op.bundle
    try:
        tool = None if op.is_script else find_tool(op.opName, PluginTree.REMOTE, rt.config.plugin_dirs).runnable()
        remote_lib = _remote_lib(rt.config.plugin_dirs, tool)
        if remote_lib:
            uploads.append(Upload(remote_lib, "lib"))
        if op.is_script:
            script = write_inline_script(ctx, op) if op.scriptContent else _fetch_script(ctx, op)
            uploads.append(Upload(script, posixpath.join(workdir, script.name), 0o700))
            if not op.scriptContent:
                for lib in rt.services.script_libs(op):
                    uploads.append(Upload(lib, posixpath.join(workdir, lib.name), 0o700))
            argv = script_argv(op.interpreter, Path(script.name), remote=True)
        else:
            assert tool is not None
            uploads.append(Upload(tool.parent, workdir))
            argv = script_argv(op.interpreter, Path(tool.name), remote=True)
    except (ToolNotFound, OSError) as exc:
        return fail_op(ctx, str(exc))
    prepared = prepare_arguments(ctx, op, remote=True)
    if prepared.error:
        return fail_op(ctx, prepared.error)
    record_inputs(ctx, op, prepared)
    if prepared.has_file and rt.jobdir.file_dir.is_dir():
        uploads.append(Upload(rt.jobdir.file_dir, posixpath.join(workdir, "file")))
    for rel in prepared.file_paths:
        local = rt.jobdir.root / rel
        if local.is_file():
            uploads.append(Upload(local, posixpath.join(workdir, "file", local.name)))
    env = _remote_env(ctx, spec.traits)
    fetch_dir = rt.jobdir.op_output_dir(ctx.triple) / ".fetch" / safe_name(op.opId)  # staging, removed below
    has_output = op.output is not None
    remote_op = RemoteOp(job_id=rt.job_id, root=root, uploads=uploads, workdir=workdir,
                         argv=argv + prepared.argv, env=env, timeout=rt.config.max_exec_secs,
                         fetch=["output.json"] if has_output else [],
                         fetch_more=_filepaths_named_in(op) if has_output else None, fetch_dir=fetch_dir, create_empty=["output.json"] if has_output else [],
                         keep_dir_on_failure=rt.config.reserve_dir_on_failure)
    ctx.log.line(f"INFO: Job directory:{dir_name}")
    ctx.log.line(f"INFO: Execute -> {' '.join(argv)} {prepared.masked}".rstrip())
    try:
        transport = ctx.remote()
    except (ValueError, ImportError) as exc:
        return fail_op(ctx, str(exc))
    ctx.status.set_op(op.opId, Status.RUNNING, None)
    cancel = _cancel_event(ctx)
    token = rt.control.register(cancel.set)
    on_line, failed_by_log = _output_sink(ctx, op)
    try:
        result = transport.run(remote_op, on_line, cancel)
    finally:
        rt.control.unregister(token)
    try:
        return _remote_outcome(ctx, op, transport, result, failed_by_log, fetch_dir, has_output)
    finally:
        _remove_staging(fetch_dir)


def _remove_staging(fetch_dir: Path) -> None:
    import shutil

    shutil.rmtree(fetch_dir, ignore_errors=True)
    try:
        fetch_dir.parent.rmdir()  # ``.fetch`` itself, once no other op of the node stages there
    except OSError:
        pass


def _remote_outcome(ctx: NodeContext, op: Operation, transport: Any, result: Any, failed_by_log: Any,
                    fetch_dir: Path, has_output: bool) -> OpOutcome:
    rt = ctx.rt
    if result.error:
        if rt.control.aborting:
            kill_error = transport.kill_job(rt.job_id)
            ctx.log.line(f"INFO: Execute kill command for job {rt.job_id} "
                         f"{'failed: ' + kill_error if kill_error else 'success'}.")
            return OpOutcome(final=Status.ABORTED, message="aborted", failure_kind=FailureKind.CANCELLED.value)
        outcome = fail_op(ctx, result.error, result.exit_code)
        outcome.failure_kind = (result.kind or FailureKind.OTHER).value
        return outcome
    failure = _tool_failure(ctx, op, result.exit_code, failed_by_log)
    if failure is not None:
        if result.exit_code != 0:
            failure.failure_kind = FailureKind.REMOTE_EXIT.value
        return failure
    data = read_json(fetch_dir / "output.json") if has_output else None
    if isinstance(data, dict):
        data = _collect_filepaths(ctx, op, data, fetch_dir)
        if any(data.get(k) is None and k in data for k in _filepath_keys(op)):
            return _finish(ctx, op, OpOutcome(final=Status.FAILED, exit_code=0, message="filepath output missing"))
    return _finish(ctx, op, OpOutcome(final=Status.SUCCEED, exit_code=0), data)


def _tool_failure(ctx: NodeContext, op: Operation, exit_code: int | None, failed_by_log: Any) -> OpOutcome | None:
    """A tool that ran to its end failed on a non-zero status (the node log names it, wherever the
    tool ran), or on a fail pattern in its output. A failed tool that could not load a module gets
    one more log line naming it and the fix."""
    if exit_code != 0:
        notice = missing_module_notice(ctx.log.path, on_target=op.kind is ExecKind.REMOTE)
        if notice:
            ctx.log.line(notice)
        return fail_op(ctx, f"{op.opName} {exit_phrase(exit_code)}", exit_code)
    if failed_by_log():  # the matcher already logged the line that matched
        return OpOutcome(final=Status.FAILED, exit_code=0, message=f"{op.opName} output matched a fail pattern")
    return None


def exit_phrase(exit_code: int | None) -> str:
    """``exited with status N``, naming the signal where the status shows one: a negative status
    (a local child killed by it) or a shell's ``128+N``."""
    def name(number: int) -> str:
        try:
            return signal.Signals(number).name
        except ValueError:
            return f"signal {number}"

    if exit_code is None:
        return "ended without an exit status"
    if exit_code < 0:
        return f"was killed by signal {-exit_code} ({name(-exit_code)})"
    if 128 < exit_code <= 128 + 64:
        return f"exited with status {exit_code} (128+{exit_code - 128}: {name(exit_code - 128)}?)"
    return f"exited with status {exit_code}"


def _output_sink(ctx: NodeContext, op: Operation) -> tuple[Any, Any]:
    """Tool output goes to the node log; with ``native/failkeys`` installed every line is also
    checked, and a match fails this op (recorded ``failed``, so a resume re-runs it; the original recorded it ``succeed``)."""
    matcher = ctx.fail_matcher
    if matcher is None:
        return ctx.log.line, lambda: False
    matcher.start_op(op.opId)

    def on_line(line: str) -> None:
        ctx.log.line(line)
        notice = matcher.feed(line)
        if notice:
            ctx.log.line(notice)

    return on_line, matcher.finish_op


def _cancel_event(ctx: NodeContext) -> Any:
    import threading

    event = threading.Event()
    if ctx.rt.control.aborting:
        event.set()
    return event


def _remote_lib(plugin_dirs: list[Path], tool: Path | None) -> Path | None:
    """``plugins/remote/lib`` of the tool's own tree when it has one (the library its tools were
    written against), else the first in search order (custom scripts, trees without one)."""
    own = owning_plugin_dir(tool, plugin_dirs) if tool is not None else None
    for base in ([own] if own is not None else []) + list(plugin_dirs):
        lib = base / PluginTree.REMOTE / "lib"
        if lib.is_dir():
            return lib
    return None


def _remote_env(ctx: NodeContext, traits: TransportTraits) -> dict[str, str]:
    node = ctx.node
    env = {"HISTSIZE": "0", "NODE_HOST": node.host, "NODE_PORT": node.port_text,
           "NODE_NAME": node.nodeName or "", "AUTOEXEC_JOBID": ctx.rt.job_id, NODE_KEY_ENV: ctx.paths.key,
           "AUTOEXEC_NODE": json.dumps(node.tool_dict(""), ensure_ascii=False)}  # no password on the target
    env.update(traits.op_env)  # e.g. the original's ssh shell had a "dumb" terminal
    node_env = ctx.node_env
    for key in ("INS_PATH", "INS_ID_PATH"):  # from the node env, not the runner env as the original did
        if key in node_env:
            env[key] = str(node_env[key])
    return env


def _filepath_keys(op: Operation) -> list[str]:
    return [k for k, v in (op.output or {}).items() if isinstance(v, dict) and v.get("type") == "filepath"]


def _filepaths_named_in(op: Operation) -> Any:
    """Second fetch round of a remote op: the files its ``filepath`` outputs point at."""
    keys = _filepath_keys(op)

    def wanted(fetched: dict[str, Path]) -> list[str]:
        data = read_json(fetched["output.json"]) if "output.json" in fetched else None
        if not keys or not isinstance(data, dict):
            return []
        return [data[k] for k in keys if isinstance(data.get(k), str) and data[k]]
    return wanted


def _collect_filepaths(ctx: NodeContext, op: Operation, data: dict[str, Any], fetch_dir: Path) -> dict[str, Any]:
    """Fetched ``filepath`` outputs move to ``output-op/<triple>/<opId>/<name>``; the value becomes
    that job-relative path, or null (and the op fails) when the file did not come back."""
    from autoexec.transports.base import local_fetch_path

    dest_dir = ctx.jobdir.op_output_dir(ctx.triple) / safe_relpath(op.opId)  # as the original: <opId>/<file>
    for key in _filepath_keys(op):
        rel = data.get(key)
        if not isinstance(rel, str) or not rel:
            continue
        fetched = local_fetch_path(fetch_dir, rel)
        if fetched.is_file():
            dest_dir.mkdir(parents=True, exist_ok=True)
            target = dest_dir / fetched.name
            fetched.replace(target)
            data[key] = str(target.relative_to(ctx.jobdir.root))
        else:
            ctx.log.line(f"ERROR: Download filepath output {key}={rel} failed.")
            data[key] = None
    return data


# --- outputs & inputs ---------------------------------------------------------------------
def _finish(ctx: NodeContext, op: Operation, outcome: OpOutcome, data: Any = None) -> OpOutcome:
    """Declared outputs filled with their defaults, stored per op and merged per node."""
    if outcome.final is not Status.SUCCEED:
        return outcome
    if op.output is None and not isinstance(data, dict):
        return outcome
    values: dict[str, Any] = dict(data) if isinstance(data, dict) else {}
    for name, spec in (op.output or {}).items():
        if name not in values:
            values[name] = spec.get("defaultValue") if isinstance(spec, dict) else None
    if values:  # the original writes no op output file for an empty output
        write_json_atomic(ctx.paths.op_output(op.opId), values)
    ctx.output.update({op.opId: values})
    if ctx.plan.header.totalCount == 1 and ctx.node.resourceId != 0 and ctx.rt.runner_output is not None:
        ctx.rt.runner_output.update({op.opId: values})  # single-node phases feed runner references, as in the original
    outcome.outputs = values
    return outcome
