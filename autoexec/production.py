"""Production mode wiring: the console notifier and downloads (issue 6)."""
from __future__ import annotations

from autoexec.loader import JobRequest
from autoexec.models.params import JobInputError
from autoexec.notify import Notifier


def production_notifier(req: JobRequest) -> Notifier:
    raise JobInputError("production mode (talking to the neatlogic console) is not available yet; "
                        "run with --devmode and --paramsfile/--nodesfile")
