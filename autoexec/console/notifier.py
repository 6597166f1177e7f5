"""The production :class:`~autoexec.events.notify.Notifier`: every state change becomes a queued console call.

Calls never block the engine on the network: they are appended to the job's durable
:class:`~autoexec.console.outbox.Outbox` and delivered in order in the background. Field names
and shapes are exactly the original's, each carrying
``passThroughEnv`` so the console can route the answer to the right job execution.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from autoexec.console import models as m
from autoexec.console.models import Envelope
from autoexec.console.outbox import Deliverer, Outbox, OutboxEntry
from autoexec.jobdir.layout import JobDir
from autoexec.events.notify import NodeRef, PhaseCounts

log = logging.getLogger("autoexec.console.notifier")


class ConsoleNotifier:
    def __init__(self, outbox: Outbox, *, job_id: str, runner_id: int = 1,
                 pass_through_env: Mapping[str, Any] | None = None, job_dir: Path | None = None,
                 on_fail_node: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.outbox = outbox
        self.job_id = str(job_id)
        self.runner_id = int(runner_id)
        self.pass_through_env = dict(pass_through_env or {})
        self.job_dir = JobDir(Path(job_dir)) if job_dir is not None else None
        self.on_fail_node = on_fail_node
        self._clock = clock
        # Handlers go in before the sender starts: entries left by an earlier process are
        # answered (hasFailNode) like our own.
        outbox.subscribe("updateNodeStatus", self._node_status_answered)
        outbox.on_dead_letter(self._dead_lettered)
        outbox.start()

    @classmethod
    def open(cls, client: Deliverer, job_dir: Path, *, job_id: str, runner_id: int = 1,
             pass_through_env: Mapping[str, Any] | None = None,
             on_fail_node: Callable[[], None] | None = None, **outbox_options: Any) -> ConsoleNotifier:
        """Outbox in ``<job_dir>/outbox`` delivering through ``client`` (a ConsoleClient)."""
        outbox = Outbox(Path(job_dir), client, **outbox_options)
        return cls(outbox, job_id=job_id, runner_id=runner_id, pass_through_env=pass_through_env,
                   job_dir=Path(job_dir), on_fail_node=on_fail_node)

    def __repr__(self) -> str:
        return f"ConsoleNotifier(job_id={self.job_id!r}, runner_id={self.runner_id})"

    def _put(self, api: str, payload: m.Payload) -> None:
        self.outbox.put(api, payload.wire())

    # -- Notifier protocol ---------------------------------------------------------------------------
    def node_status(self, *, group_no: int, phase: str, node: NodeRef, status: str,
                    fail_ignore: bool, warn_count: int) -> None:
        self._put("updateNodeStatus", m.NodeStatus(
            job_id=self.job_id, group_no=group_no, phase=phase, resource_id=node.resource_id,
            host=node.host, port=node.port, status=status, fail_ignore=1 if fail_ignore else 0,
            warn_count=warn_count, time=self._clock(), pass_through_env=self.pass_through_env))

    def phase_status(self, *, group_no: int, phase: str, status: str, counts: PhaseCounts) -> None:
        self._put("updatePhaseStatus", m.PhaseStatus(
            job_id=self.job_id, group_no=group_no, phase=phase, status=status,
            fail_node_count=counts.fail, suc_node_count=counts.suc, skip_node_count=counts.skip,
            ignore_fail_node_count=counts.ignore, warn_count=counts.warn, time=self._clock(),
            pass_through_env=self.pass_through_env))

    def round_ended(self, *, group_no: int, phase: str, round_no: int) -> None:
        self._put("informRoundEnded", m.RoundEnded(
            job_id=self.job_id, runner_id=self.runner_id, group_no=group_no, phase=phase,
            round_no=round_no, time=self._clock(), pid=os.getpid(),
            pass_through_env=self.pass_through_env))

    def fire_next_group(self, *, group_no: int) -> None:
        self._put("fireNextGroup", m.FireNextGroup(
            job_id=self.job_id, runner_id=self.runner_id, group_no=group_no, time=self._clock(),
            pass_through_env=self.pass_through_env))

    def job_status(self, *, status: str) -> None:
        self._put("updateJobStatus", m.JobStatus(job_id=self.job_id, time=self._clock(), status=status,
                                                 pass_through_env=self.pass_through_env))

    def export_env(self, *, name: str, value: str, hidden: bool) -> None:
        # The original always sent isHidden 0; send what the tool asked.
        self._put("exportJobEnv", m.ExportEnv(
            job_id=self.job_id, env_name=name, env_value=value, is_hidden=1 if hidden else 0,
            time=self._clock(), pass_through_env=self.pass_through_env))

    def update_global_param(self, *, key: str, value: str) -> None:
        self._put("updateGlobalParam", m.GlobalParam(
            job_id=self.job_id, key=key, default_value=value, time=self._clock(),
            pass_through_env=self.pass_through_env))

    def flush(self, timeout: float) -> bool:
        return self.outbox.flush(timeout)

    def close(self) -> None:
        self.outbox.close()

    # -- answers -----------------------------------------------------------------------------------------
    def _node_status_answered(self, entry: OutboxEntry, envelope: Envelope) -> None:
        ret = envelope.return_
        if not isinstance(ret, dict):
            return
        try:
            failed = int(m.NodeStatusAnswer.model_validate(ret).hasFailNode) == 1
        except (ValueError, TypeError):
            return
        if failed and self.on_fail_node is not None:
            log.info("console reports a failed node in job %s (after %s #%d)",
                     self.job_id, entry.api, entry.seq)
            self.on_fail_node()

    def _dead_lettered(self, entry: OutboxEntry, message: str) -> None:
        """A phase status the console never accepted: make the next run re-download nodes.

        That is what the original did on any updatePhaseStatus failure,
        so that console and runner agree again on the node list.
        """
        if entry.api != "updatePhaseStatus" or self.job_dir is None:
            return
        # the same paths the nodes refresher downloads to (production._nodes_refresher)
        phase = str(entry.payload.get("phase", ""))
        group_no = int(entry.payload.get("groupNo") or 0)
        for path in (self.job_dir.phase_nodes(phase), self.job_dir.group_nodes(group_no), self.job_dir.nodes):
            if path.exists():
                os.utime(path, (0, 0))
                return
