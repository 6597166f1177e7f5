"""The environment of a runner-side tool, built once per job and tool directory.

A template holds the job-wide part with placeholders for the few per-node values, so a node only
copies it and fills those in; it is rebuilt whenever the job environment changes. Why and
figures: docs/performance.md."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from autoexec.ops.toolenv import library_env
from autoexec.ops.tools import local_tool_argv
from autoexec.jobdir.store import dumps
from autoexec.transports.spawn import which

if TYPE_CHECKING:
    from autoexec.models.params import Operation
    from autoexec.ops.nodectx import NodeContext
    from autoexec.job.runtime import JobRuntime


class EnvTemplate:
    """The child environment of one (tool directory, phase, target-or-not) in one job."""

    def __init__(self, rt: "JobRuntime", snapshot: dict[str, str], plugin_dir: Path, group_no: int,
                 phase: str, nodes_path: str, to_target: bool) -> None:
        self.snapshot = snapshot
        self.cwd = str(rt.jobdir.root)
        env = dict(snapshot)
        libs = library_env(plugin_dir, rt.config.plugin_dirs, env)
        # Same keys in the same order as a per-node ``env.update`` would add them; "" marks the
        # per-node values, filled by :meth:`render`.
        env.update({
            "TERM": "dumb",
            "GROUP_NO": str(group_no),
            "OUTPUT_DIR": "",
            "OUTPUT_PATH": "",
            "OPERATION_ID": "",
            "LIVEDATA_PATH": "",
            "NODE_OUTPUT_PATH": "",
            "PATH": libs["PATH"],
            "PYTHONPATH": libs["PYTHONPATH"],
            "PERL5LIB": libs["PERL5LIB"],
            "AUTOEXEC_PHASE_NAME": phase,
            "AUTOEXEC_NODE": "",
            "AUTOEXEC_NODES_PATH": nodes_path,
        })
        if to_target:
            env.update({"NODE_HOST": "", "NODE_PORT": "", "NODE_NAME": ""})
        self.env = env
        self.to_target = to_target
        self._programs: dict[str, str] = {}
        self._tools: dict[Path, list[str]] = {}

    def render(self, ctx: "NodeContext", op: "Operation", out_path: str) -> dict[str, str]:
        paths, node = ctx.paths, ctx.node
        env = self.env.copy()
        env["OUTPUT_DIR"] = paths.op_output_dir
        env["OUTPUT_PATH"] = out_path
        env["OPERATION_ID"] = op.opId
        env["LIVEDATA_PATH"] = paths.livedata(op.opId)
        env["NODE_OUTPUT_PATH"] = paths.output
        # As the original: the whole node, password decrypted (runner-side tools that log in to the
        # node read it there). The environment is readable only by this uid; never argv or logs.
        env["AUTOEXEC_NODE"] = dumps(node.tool_dict(ctx.password))
        if self.to_target:
            env["NODE_HOST"] = node.host
            env["NODE_PORT"] = node.port_text
            env["NODE_NAME"] = node.nodeName or ""
            if ctx.password:
                env["AUTOEXEC_NODE_PASSWORD"] = ctx.password
        return env

    def tool_argv(self, tool: Path) -> list[str]:
        """How a tool of this directory starts (:func:`local_tool_argv`, read once per job)."""
        argv = self._tools.get(tool)
        if argv is None:
            argv = self._tools[tool] = local_tool_argv(tool)
        return argv

    def program(self, name: str) -> str:
        """``name`` resolved on this environment's ``PATH`` from the job directory (cached)."""
        found = self._programs.get(name)
        if found is None:
            found = self._programs[name] = which(name, self.env.get("PATH"), self.cwd)
        return found


def template_for(ctx: "NodeContext", plugin_dir: Path, to_target: bool) -> EnvTemplate:
    rt, plan = ctx.rt, ctx.plan
    key = ("child-env", plugin_dir, plan.group_no, plan.name, plan.nodes_path, to_target)
    return rt.env.derived(key, lambda env: EnvTemplate(rt, env, plugin_dir, plan.group_no, plan.name,
                                                       str(plan.nodes_path), to_target))
