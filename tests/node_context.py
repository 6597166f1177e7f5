"""One node's context in one phase, built from a real job dir: what the executor hands to op
dispatch and to native ops. For tests that drive :mod:`autoexec.ops.dispatch` and
:mod:`autoexec.ops.native` directly, without the executor around them."""
from __future__ import annotations

import json
from typing import Any, Iterator

from autoexec.engine.groups import plan_phase
from autoexec.jobdir.logs import NodeLog
from autoexec.ops.nodectx import NodeContext
from autoexec.jobdir.store import NodeOutput, NodeStatus
from tests.fixtures_core import JobFiles


class Contexts:
    """Builds contexts and closes their logs at the end of the test."""

    def __init__(self, jobs: JobFiles) -> None:
        self.jobs = jobs
        self._open: list[NodeContext] = []

    def make(self, job_id: str, ops: list[dict[str, Any]], phase_type: str = "runner", nodes: str | None = None,
             node: int = 0, **phase: Any) -> NodeContext:
        """The context of the ``node``-th node of the job's only phase (the runner node in a runner phase)."""
        params = {"runFlow": [{"groupNo": 0, "phases": [dict(phaseName="p", phaseType=phase_type, operations=ops,
                                                             **phase)]}]}
        rt = self.jobs.runtime(job_id, params, nodes)
        group = rt.params.runFlow[0]
        plan = plan_phase(rt, group, group.phases[0], 0, None)
        target = plan.nodes[node]
        paths = rt.jobdir.node_paths(plan.name, target.triple)
        status = NodeStatus(paths.status, rt.job_id, plan.name, target, rt.mirror)
        output = rt.runner_output if target.resourceId == 0 and rt.runner_output is not None else \
            NodeOutput(paths.output, rt.job_id, target, rt.mirror)
        log = NodeLog(paths.log, paths.hislog_dir, rt.exec_user, mask=rt.masker)
        ctx = NodeContext(rt, plan, target, status, output, log, paths)
        self._open.append(ctx)
        return ctx

    def close(self) -> None:
        for ctx in self._open:
            ctx.close()
            ctx.status.close()
            ctx.log.close()
            ctx.rt.console.close()


def log_text(ctx: NodeContext) -> str:
    with open(ctx.paths.log, encoding="utf-8") as fh:
        return fh.read()


def read(path: Any) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def open_contexts(jobs: JobFiles) -> Iterator[Contexts]:
    """The body of a test module's ``contexts`` fixture."""
    made = Contexts(jobs)
    yield made
    made.close()
