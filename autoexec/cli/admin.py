"""The non-run modes: ``--abort``, ``--pause``, ``--cleanstatus``, ``--register``.

A running job is found through the record in its lock file (pid + process start time, see
``joblock``), never by scanning command lines for the job id as the original did (``--abort 123`` must not hit
job 1234, and a job started under another name must still be found).
"""
from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

from autoexec.conf.config import load_config
from autoexec.jobdir.layout import JobDir, UnsafeName
from autoexec.jobdir.lock import kill_tree, leave_request, running_pid, wait_gone
from autoexec.models.status import Status


def _jobdir(job_id: str) -> JobDir:
    return JobDir.for_job(load_config(decrypt=False).data_dir, job_id)


def find_job_process(job_id: str) -> int | None:
    try:
        return running_pid(_jobdir(job_id).root, job_id)
    except UnsafeName:
        return None


def _job_process(job_id: str, status: Status, devmode: bool, pass_through: dict[str, Any] | None) -> int | None:
    """The job's pid; with no process, the console is told the job is ``status`` (not in devmode).

    A run that is starting but has not written its pid record yet gets the request through the
    job dir (see ``joblock``): it is left first, then the record is read again."""
    pid = find_job_process(job_id)
    if pid is None:
        try:
            leave_request(_jobdir(job_id).root, "abort" if status is Status.ABORTED else "pause")
        except (OSError, UnsafeName):
            pass
        pid = find_job_process(job_id)
    if pid is None:
        if not devmode:
            from autoexec.load.production import notify_job_status

            notify_job_status(job_id, status, pass_through or {})
        print(f"INFO: Can not find job {job_id} process.")
    return pid


def abort_job(job_id: str, devmode: bool = False, grace: float = 15.0, pass_through: dict[str, Any] | None = None) -> int:
    """0 killed, 1 could not kill, 2 no process, as the original exits. Waits only as long as the job needs."""
    print(f"INFO: try to kill job:{job_id}...")
    pid = _job_process(job_id, Status.ABORTED, devmode, pass_through)
    if pid is None:
        return 2
    print(f"INFO: Try to stop job {job_id} process {pid}...")
    os.kill(pid, signal.SIGTERM)
    if not wait_gone(pid, grace):
        kill_tree(pid)
        if not wait_gone(pid, 2):
            print(f"WARN: Kill job {job_id} process {pid} failed.")
            return 1
    print(f"INFO: Process {pid} killed.")
    return 0


def pause_job(job_id: str, devmode: bool = False, pass_through: dict[str, Any] | None = None) -> int:
    """0 paused (signalled once; the job stops at its next op boundary and reports itself),
    2 no process (no re-signalling every few seconds as the original did)."""
    print(f"INFO: try to pause job:{job_id}")
    pid = _job_process(job_id, Status.PAUSED, devmode, pass_through)
    if pid is None:
        return 2
    print(f"INFO: Try to pause job {job_id} process {pid}...")
    os.kill(pid, signal.SIGUSR1)
    print(f"INFO: Job {job_id} process {pid} paused.")
    return 0


def clean_status(job_id: str) -> int:
    cfg = load_config()
    try:
        jobdir = JobDir.for_job(cfg.data_dir, job_id)
    except UnsafeName as exc:
        print(f"autoexec: error: --jobid: {exc}")
        return 2
    try:
        from autoexec.jobdir.mongo import open_store

        store = open_store(cfg)
        if store is not None:
            store.delete_job_status(job_id)
    except ImportError:
        pass
    status: Path = jobdir.status_dir
    shutil.rmtree(status, ignore_errors=True)
    return 1 if status.exists() else 0


def register(tenant: str) -> int:
    try:
        from autoexec.console.client import ConsoleClient
        from autoexec.console.register import register_tools
    except ImportError:
        print("autoexec: error: --register needs the console client (not available in this build)")
        return 2
    cfg = load_config()
    if not cfg.server_baseurl:
        print(f"autoexec: error: {cfg.path}: server.baseurl is not set; --register needs the console")
        return 2
    return register_tools(ConsoleClient.from_config(cfg), tenant, cfg.plugin_dirs)
