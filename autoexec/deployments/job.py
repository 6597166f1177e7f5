"""The ``autoexec-job`` deployment flow: one flow run per job invocation, CLI semantics.

Deployed by ``prefect.yaml`` as ``autoexec.deployments.job.job_flow``. Its parameters are the CLI's
inputs (``--jobid``, ``--execuser``, ``--paramsfile``/inline ``params``, ``--nodesfile``/inline
``nodes`` JSON lines, ``--passthroughenv``, ``--phasegroups``/``--phases``/``--nodes`` filters,
``--force``, ``--firstfire``, ``--nofirenext``, ``--devmode``); the job dir, status files and
outputs are the ones the CLI would use under ``$AUTOEXEC_HOME`` of the runner host.
"""
from __future__ import annotations

from autoexec.flows.job_flow import job_flow

__all__ = ["job_flow"]
