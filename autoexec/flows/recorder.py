"""``python -m autoexec.flows.recorder SPOOL``: the Prefect side of one CLI job (see
:mod:`autoexec.recording`). Started detached by the job; finds or starts the Prefect API, replays
the spool as the job's flow run, then removes the spool. Its own output goes to
``$AUTOEXEC_HOME/logs/prefect-recorder.log``; a run it could not record gets one WARN line in the
job's console log, because that is where an operator looks.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def _console_warn(console: str | None, text: str) -> None:
    if not console:
        return
    try:
        fd = os.open(console, os.O_WRONLY | os.O_APPEND)
    except OSError:
        return
    try:
        os.write(fd, f"{time.strftime('%H:%M:%S ')}WARN: {text}\n".encode())
    finally:
        os.close(fd)


def _lower_priority() -> None:
    """The record may lag; the job and its targets must not. On a 2-core runner, Prefect's import
    and ~5 ms per task run would otherwise take CPU from the tools and from SSH handshakes. Done
    after ``ensure_api`` so that an embedded server started from here keeps normal priority."""
    try:
        niceness = int(os.environ.get("AUTOEXEC_RECORDER_NICE", "10"))
    except ValueError:
        return
    from autoexec.prefect_env import lower_priority

    lower_priority(niceness)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m autoexec.flows.recorder SPOOL", file=sys.stderr)
        return 2
    spool = Path(args[0])
    from autoexec.flows.feed import Feed

    feed = Feed(spool).start()
    job = feed.first(timeout=60)
    if job is None:
        print(f"{spool}: no job_start event", file=sys.stderr)
        return 1
    console = job.get("console")
    from autoexec.config import autoexec_home
    from autoexec.prefect_env import PrefectServerError, ensure_api, quiet_client_defaults

    if os.environ.get("AUTOEXEC_RECORDER_VERBOSE") != "1":
        quiet_client_defaults()
    try:
        ensure_api(autoexec_home())
    except PrefectServerError as exc:
        _console_warn(console, f"No Prefect record of this run: {exc}; "
                               f"replay it with: python -m autoexec.flows.recorder {spool}")
        print(f"job {job.get('jobId')}: {exc}", file=sys.stderr)
        return 1
    _lower_priority()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from autoexec.flows.mirror import record

    try:
        # Flow-run heartbeats cost ~1 s per (sub)flow at exit; the job process is the one supervised.
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            record(feed)
    except Exception as exc:  # noqa: BLE001 - the job is unaffected; say why its record is missing
        _console_warn(console, f"Prefect record of this run incomplete: {type(exc).__name__}: {exc}; "
                               f"replay it with: python -m autoexec.flows.recorder {spool}")
        print(f"job {job.get('jobId')}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        feed.stop()
    spool.unlink(missing_ok=True)
    return 0


def entry() -> None:
    """Waits up to 30 s for Prefect's event and log workers, then exits at once."""
    from autoexec.prefect_env import exit_after_draining

    exit_after_draining(main(), timeout=30)


if __name__ == "__main__":
    entry()
