"""Production mode wiring: the console notifier and downloads (issue 6)."""
from __future__ import annotations

from autoexec.config import Config
from autoexec.loader import JobRequest, build_runtime
from autoexec.models.params import JobInputError
from autoexec.runtime import JobRuntime


def build_job_runtime(req: JobRequest, cfg: Config | None = None) -> JobRuntime:
    """The one entry for the CLI and deployment runs: devmode builds from local inputs only,
    production downloads inputs from the console and reports back through its outbox."""
    if req.dev_mode:
        return build_runtime(req, cfg)
    raise JobInputError("production mode (talking to the neatlogic console) is not available yet; "
                        "run with --devmode and --paramsfile/--nodesfile")


def notify_job_status(job_id: str, status: str) -> None:
    """``--abort``/``--pause`` helpers with no running job: tell the console directly."""
