"""``autoexec --dryrun``: what a run of the job would do, per group, phase, node and operation.

It resolves what a run resolves before anything starts — which nodes a phase runs on and how
many at once, grayScale rounds, whether a node or op would be skipped as already done, where each
op runs, its tool or script, its argv with secrets masked, the references that can already be
resolved (outputs of ops that have not run yet cannot), what would be uploaded to which remote
directory — and prints it. It connects to no target, calls no console, opens no MongoDB, starts
no Prefect record, and writes nothing: no job directory files, status, pid or console log.
"""
from __future__ import annotations

import os
import posixpath
import sys
from pathlib import Path
from typing import TextIO, cast

from autoexec.transports.base import TransportTraits
from autoexec.conf.config import Config, load_config
from autoexec.conf.secrets import OPTION_PREFIX
from autoexec.job.control import JobControl
from autoexec.job.files import FileParams
from autoexec.engine.groups import nodes_file_for, plan_phase, round_sizes, runner_round
from autoexec.jobdir.layout import JobDir, NodePaths, safe_name
from autoexec.job.env import JobEnv
from autoexec.job.spec import JobSpec, frozen
from autoexec.load.loader import (JobRequest, ResolvedInputs, _decryptor, _env_text, _max_parallel, _runner_id,
                                  brings_own_nodes, console_gives_nodes, console_gives_params, job_dir_of,
                                  resolve_inputs)
from autoexec.jobdir.logs import ConsoleLog, NodeLog
from autoexec.conf.masking import Masker
from autoexec.models.nodes import RUNNER_NODE, Node, NodesFile
from autoexec.models.optype import ExecKind, PluginTree
from autoexec.models.params import Group, Operation, Params
from autoexec.models.status import Status
from autoexec.events.notify import NullNotifier
from autoexec.ops.nodectx import NodeContext
from autoexec.ops.prepare import prepare_arguments
from autoexec.ops.toolpath import ToolNotFound, find_tool
from autoexec.ops.tools import script_argv, script_file_name
from autoexec.job.runtime import JobRuntime, PhasePlan
from autoexec.job.services import NoConsole
from autoexec.jobdir.store import NodeOutput, NodeStatus
from autoexec.job.thresholds import FailLimit


class _Lines:
    """Stands in for a node log: collects what rendering would have logged (its warnings)."""

    def __init__(self) -> None:
        self.collected: list[str] = []

    def line(self, text: str) -> None:
        self.collected.append(text)


class _DryContext(NodeContext):
    def __init__(self, rt: JobRuntime, plan: PhasePlan, node: Node, status: NodeStatus, output: NodeOutput,
                 lines: _Lines, paths: NodePaths) -> None:
        # _Lines has the part of a node log that argument preparation uses (line)
        super().__init__(rt, plan, node, status, output, cast("NodeLog", lines), paths)
        self.lines = lines

    def _credentials_from_block(self) -> None:
        name = (self.node.model_extra or {}).get("credentialsBlock")
        if name:  # looking a block up would call the Prefect API
            self.credentials_error = None


def _runtime(req: JobRequest, cfg: Config, jobdir: JobDir, params: Params) -> JobRuntime:
    job_id = req.job_id if req.job_id not in ("", "0") else params.job_id
    env = dict(os.environ)
    env.update({"AUTOEXEC_JOBID": job_id, "AUTOEXEC_USER": req.exec_user, "JOB_PATH": str(jobdir.root),
                "AUTOEXEC_WORK_PATH": str(jobdir.root), "AUTOEXEC_HOME": str(cfg.home)})
    decrypt = _decryptor(cfg)
    for key, value in params.opt.items():
        text = _env_text(value)
        env[key] = decrypt(text) if text.startswith(OPTION_PREFIX) else text
    for key, value in params.environment.items():
        env[key] = _env_text(value)
    spec = JobSpec(job_id=job_id, jobdir=jobdir, params=params, config=cfg, exec_user=req.exec_user,
                   force=req.force, runner_id=_runner_id(req, params), phase_filter=frozen(req.phases),
                   group_filter=frozen(req.phase_groups), node_filter=frozen(req.node_ids),
                   max_parallel=_max_parallel(), decrypt=decrypt, dev_mode=req.dev_mode)
    notifier, masker = NullNotifier(), Masker()
    return JobRuntime(spec=spec, env=JobEnv(env, job_id=job_id, notifier=notifier, masker=masker),
                      control=JobControl(), notifier=notifier, console=ConsoleLog(os.devnull),
                      services=_NothingFetched(FileParams(cfg.data_dir, jobdir.file_dir), cfg.path),
                      masker=masker, runner_output=NodeOutput(jobdir.node_output("local-0-0"), job_id, RUNNER_NODE))


class _NothingFetched(NoConsole):
    """A dry run downloads and links nothing: file parameters stay unresolved."""

    def file_name(self, item: int | str) -> str | None:
        return None


class DryRun:
    def __init__(self, rt: JobRuntime, req: JobRequest, inputs: ResolvedInputs, out: TextIO) -> None:
        self.rt, self.req, self.inputs, self.out = rt, req, inputs, out

    def nodes(self, group: Group, phase: str | None) -> tuple[Path, NodesFile]:
        """The nodes file a run would read (a phase's or group's own, else the job's) and what it
        would hold once the run placed its inputs: the loader's resolution, read where it is."""
        path = nodes_file_for(self.rt, group.groupNo, phase, exists=self.inputs.placed)
        return path, self.inputs.nodes_at(path)

    def say(self, indent: int, text: str) -> None:
        self.out.write("  " * indent + text + "\n")

    def run(self) -> None:
        rt = self.rt
        self.say(0, f"Dry run of job {rt.job_id} ({'devmode' if rt.dev_mode else 'production'}): nothing is "
                    f"started, connected, downloaded or written.")
        if not rt.dev_mode:
            jobdir, inputs = rt.jobdir, self.inputs
            fetched = [name for name, fetch in (
                ("params", console_gives_params(self.req, jobdir)),
                ("nodes", console_gives_nodes(self.req, jobdir, inputs.params.runNode))) if fetch]
            if fetched:
                self.say(0, f"Inputs: the job directory's copies (a run would refresh its {' and '.join(fetched)} "
                            f"from the console first).")
            if not brings_own_nodes(self.req, inputs.params.runNode):
                self.say(0, "Nodes: the copies there are now (a run asks the console for each phase's or group's "
                            "nodes just before it runs them).")
        for group in rt.params.runFlow:
            if rt.spec.group_filter is not None and group.groupNo not in rt.spec.group_filter:
                continue
            self.group(group)

    def group(self, group: Group) -> None:
        rt = self.rt
        round_count = group.roundCount if group.roundCount is not None else rt.params.roundCount
        one_shot = (rt.spec.phase_filter is not None and len(rt.spec.phase_filter) == 1) or not group.gray_scale
        phases = [(i, p) for i, p in enumerate(group.phases, 1) if rt.spec.phase_filter is None or p.phaseName in rt.spec.phase_filter]
        if one_shot:
            self.say(0, f"Group {group.groupNo}: oneShot, {len(phases)} phase(s) run concurrently")
            for index, phase in phases:
                path, nodes = self.nodes(group, phase.phaseName)
                plan = plan_phase(rt, group, phase, index, round_count, path, holds=nodes)
                self.phase(plan, plan.nodes)
            return
        path, group_nodes = self.nodes(group, None)
        all_nodes = group_nodes.nodes
        sizes = round_sizes(len(all_nodes), round_count)
        self.say(0, f"Group {group.groupNo}: grayScale, {len(sizes)} round(s) of {', '.join(map(str, sizes))} node(s), "
                    f"each round through every phase in order; failure thresholds count per round")
        offset = 0
        for round_no, size in enumerate(sizes, 1):
            batch = [n for n in all_nodes[offset:offset + size] if n.runnerId == rt.runner_id
                     and (rt.spec.node_filter is None or n.resourceId in rt.spec.node_filter)]
            offset += size
            self.say(1, f"Round {round_no}/{len(sizes)}: {', '.join(str(n.resourceId) for n in batch) or 'no node of this runner'}")
            for index, phase in phases:
                plan = plan_phase(rt, group, phase, index, round_count, path, holds=group_nodes)
                plan.parallel = 1 if plan.on_runner else max(1, min(max(sizes), rt.max_parallel))
                if plan.on_runner:
                    if plan.nodes and round_no == runner_round(phase.execRound, len(sizes)):
                        self.phase(plan, plan.nodes, indent=2)
                elif batch:
                    self.phase(plan, batch, indent=2)

    def phase(self, plan: PhasePlan, nodes: list[Node], indent: int = 1) -> None:
        limit = FailLimit.of(plan.phase, self.rt.params)
        tolerance = ""
        if limit.tolerant:
            tolerance = ", tolerates " + " and ".join(
                ([f"{limit.max_count} failed node(s)"] if limit.max_count is not None else [])
                + ([f"{limit.max_percent:g}% failed"] if limit.max_percent is not None else []))
        where = "on the runner (local-0-0)" if plan.on_runner else \
            f"{len(nodes)} node(s), {max(1, min(plan.parallel, len(nodes)))} at once"
        self.say(indent, f"Phase {plan.name}: {where}{tolerance}")
        if not nodes:
            self.say(indent + 1, "nothing to run on this runner")
        for node in nodes:
            self.node(plan, node, indent + 1)

    def node(self, plan: PhasePlan, node: Node, indent: int) -> None:
        rt = self.rt
        paths = rt.jobdir.node_paths(plan.name, node.triple)
        status = NodeStatus(paths.status, rt.job_id, plan.name, node)
        output = rt.runner_output if node.resourceId == 0 and rt.runner_output is not None else \
            NodeOutput(paths.output, rt.job_id, node)
        recorded = status.data.get("status")
        if Status.of(recorded).done and not rt.force:
            self.say(indent, f"{node.triple}: skipped, status {recorded} (use --force to re-run)")
            return
        via = "" if node.resourceId == 0 else f" via {node.protocol}://{node.username}@{node.host}:{node.protocolPort}"
        self.say(indent, f"{node.triple}{via}" + (f" (status {recorded}: runs again)" if recorded else ""))
        log = _Lines()
        ctx = _DryContext(rt, plan, node, status, output, log, paths)
        self.ops(ctx, plan.phase.operations, indent + 1)

    def ops(self, ctx: _DryContext, ops: list[Operation], indent: int) -> None:
        for op in ops:
            if op.is_if_block:
                self.say(indent, f"{op.opId}: IF [ {op.condition} ] (decided at run time)")
                self.say(indent + 1, "then:")
                self.ops(ctx, list(op.if_ops or []), indent + 2)
                self.say(indent + 1, "else:")
                self.ops(ctx, list(op.else_ops or []), indent + 2)
                continue
            self.op(ctx, op, indent)

    def op(self, ctx: _DryContext, op: Operation, indent: int) -> None:
        rt = self.rt
        on_runner = ctx.node.resourceId == 0
        if ctx.status.op_status(op.opId) == Status.SUCCEED and not rt.force:
            self.say(indent, f"{op.opId} {op.opName}: skipped, succeeded before")
            return
        extras = []
        if op.retries:
            extras.append(f"retried up to {op.retries}x, {op.retryDelay:g}s apart")
        if op.fail_ignore:
            extras.append("failure ignored")
        kind = op.kind
        place = {ExecKind.NATIVE: "inside the runner" if op.sub_name in _native_in_process() else "runner child",
                 ExecKind.LOCAL: "runner child", ExecKind.LOCALREMOTE: "runner child, against the node",
                 ExecKind.REMOTE: f"on {ctx.node.host} over {ctx.node.protocol}"}[kind]
        self.say(indent, f"{op.opId} {op.opName} [{place}]" + (f" ({'; '.join(extras)})" if extras else ""))
        if (on_runner and kind in (ExecKind.REMOTE, ExecKind.LOCALREMOTE)) or (not on_runner and kind is ExecKind.LOCAL):
            self.say(indent + 1, f"ERROR: op type {op.opType} cannot run in phase {ctx.plan.name} on this node: the run fails it")
            return
        remote = kind is ExecKind.REMOTE
        program = self.program(op, remote)
        prepared = prepare_arguments(ctx, op, remote=remote)
        for warning in ctx.lines.collected:
            self.say(indent + 1, warning)
        ctx.lines.collected.clear()
        if prepared.error:
            self.say(indent + 1, f"argv: {program} … (not resolvable before the run: {prepared.error})")
        else:
            self.say(indent + 1, f"argv: {program} {prepared.masked}".rstrip())
        if remote:
            self.remote_layout(ctx, op, prepared.has_file, prepared.file_paths, indent + 1)

    def program(self, op: Operation, remote: bool) -> str:
        if op.is_script:
            if not op.scriptContent:
                return f"<custom script {op.scriptId}, downloaded from the console at run time>"
            name = Path(script_file_name(op))
            path = name if remote else self.rt.jobdir.script_dir(op.bundle) / name
            return " ".join(script_argv(op.interpreter, path, remote=remote))
        try:
            tool = find_tool(op.opName, PluginTree.REMOTE if remote else PluginTree.LOCAL, self.rt.config.plugin_dirs).runnable()
        except ToolNotFound as exc:
            return f"<{exc}: the run fails this op>"
        return " ".join(script_argv(op.interpreter, Path(tool.name), remote=True)) if remote else str(tool)

    def remote_layout(self, ctx: NodeContext, op: Operation, has_file: bool, file_paths: list[str],
                      indent: int) -> None:
        rt, node = self.rt, ctx.node
        dir_name = f"autoexec-{safe_name(rt.job_id)}-{node.resourceId}-{ctx.plan.index}"
        spec = ctx.transport_spec
        root = (spec.traits if spec is not None else TransportTraits()).remote_root(dir_name)
        uploads = []
        for base in rt.config.plugin_dirs:
            if (base / PluginTree.REMOTE / "lib").is_dir():
                uploads.append(f"{base / PluginTree.REMOTE / 'lib'} -> {root}/lib")
                break
        workdir = posixpath.join(root, op.bundle) if op.bundle else root
        if op.is_script:
            uploads.append(f"{'inline script' if op.scriptContent else 'custom script'} {script_file_name(op)} -> "
                           f"{workdir}/{script_file_name(op)}")
        else:
            try:
                tool = find_tool(op.opName, PluginTree.REMOTE, rt.config.plugin_dirs).runnable()
                uploads.append(f"{tool.parent} -> {workdir}")
            except ToolNotFound:
                pass
        if has_file:
            uploads.append(f"{rt.jobdir.file_dir} -> {workdir}/file")
        uploads += [f"{rt.jobdir.root / rel} -> {workdir}/file/{Path(rel).name}" for rel in file_paths]
        self.say(indent, f"remote directory {root} (removed after the op), working directory {workdir}")
        for upload in uploads:
            self.say(indent + 1, f"upload {upload}")


def _native_in_process() -> set[str]:
    from autoexec.ops.native import NATIVE_IN_PROCESS

    return set(NATIVE_IN_PROCESS)


def dry_run(req: JobRequest, out: TextIO | None = None) -> int:
    cfg = load_config()
    jobdir = job_dir_of(req, cfg)
    inputs = resolve_inputs(req, jobdir, no_params_hint="a dry run downloads nothing, give --paramsfile")
    rt = _runtime(req, cfg, jobdir, inputs.params)
    try:
        DryRun(rt, req, inputs, out or sys.stdout).run()
    finally:
        rt.console.close()
    return 0

