"""``autoexec``: the command line of the original runner, same flags, meanings and exit codes.

Inputs are validated before Prefect is even imported, so a typo in params.json costs a second,
not a server start, and nothing is written into the job's status.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import TYPE_CHECKING, Any

from autoexec.conf.config import ConfigError, autoexec_home
from autoexec.conf.settings import load_settings

if TYPE_CHECKING:
    from autoexec.job.control import JobControl
    from autoexec.jobdir.lock import JobLock
    from autoexec.job.runtime import JobRuntime


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autoexec", description="Run or control a neatlogic autoexec job.")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also print the console log's lines, and Prefect's own progress lines")
    p.add_argument("-j", "--jobid", default="0", help="job id (decides the job directory)")
    p.add_argument("-u", "--execuser", default="anonymous", help="operator name")
    p.add_argument("-p", "--paramsfile", default="", help="local params.json instead of downloading it")
    p.add_argument("-n", "--nodesfile", default="", help="local nodes file instead of downloading it")
    p.add_argument("-f", "--force", action="store_true", help="re-run nodes and ops that already succeeded")
    p.add_argument("-i", "--firstfire", action="store_true", help="first run of this job: refresh inputs, new console log")
    p.add_argument("--reuseconslog", action="store_true", help="with --firstfire: keep appending to console.txt")
    p.add_argument("-k", "--abort", action="store_true", help="abort the running job")
    p.add_argument("-s", "--pause", action="store_true", help="pause the running job at the next op boundary")
    p.add_argument("-r", "--register", default="", metavar="TENANT", help="register built-in tools with the console")
    p.add_argument("-c", "--cleanstatus", action="store_true", help="delete the job's node status")
    p.add_argument("--purgejobdata", default=None, metavar="DAYS", help="remove job data older than DAYS days")
    p.add_argument("-d", "--devmode", action="store_true", help="developer mode: no console callbacks")
    p.add_argument("--nofirenext", action="store_true", help="do not ask the console to fire the next group")
    p.add_argument("--passthroughenv", default="{}", metavar="JSON", help="JSON echoed back to the console")
    p.add_argument("--phasegroups", default="", help="comma-separated group numbers to run")
    p.add_argument("--phases", default="", help="comma-separated phase names to run")
    p.add_argument("--nodes", default="", help="comma-separated node resourceIds to run")
    p.add_argument("--sqlfiles", default="", metavar="JSON", help="SQL file descriptors for sqlfile tools")
    p.add_argument("--dryrun", action="store_true", help="print what a run would do per phase and node; run nothing")
    p.add_argument("--report", action="store_true", help="write the job's HTML report (also: autoexec report --jobid J)")
    return p


def _fail(message: str, code: int = 2) -> int:
    """One line, whatever the message holds (a newline or undecodable text from a hostile input)."""
    line = message.replace("\r", "\\r").replace("\n", "\\n").encode("utf-8", "backslashreplace").decode("utf-8")
    print(f"autoexec: error: {line}", file=sys.stderr)
    return code


def _purge_days(text: str) -> float | str:
    """``--purgejobdata DAYS``: a positive number (``0`` purged nothing in the original and then ran job 0)."""
    try:
        days = float(text)
    except ValueError:
        days = float("nan")
    if not math.isfinite(days) or days <= 0:
        return f"--purgejobdata: {text!r} must be a positive number of days"
    return days


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:
        from autoexec.jobdir.report import report_main
        return report_main(argv[1:])
    args = build_parser().parse_args(argv)
    args.user_term = os.environ.get("TERM", "")  # the progress view draws on the user's terminal
    os.environ["TERM"] = "dumb"
    os.environ["AUTOEXEC_PID"] = str(os.getpid())
    os.environ["AUTOEXEC_USER"] = args.execuser
    if args.devmode:
        os.environ["AUTOEXEC_DEV_MODE"] = "1"
    try:
        load_settings()  # a bad AUTOEXEC_* value: one line and exit 2 before anything happens
        if not (args.cleanstatus or args.register or args.pause or args.abort or args.report
                or args.purgejobdata is not None or args.dryrun):
            return run_locked(args)
        _encrypt_config()
        if args.cleanstatus:
            from autoexec.cli.admin import clean_status
            return clean_status(args.jobid)
        if args.register:
            from autoexec.cli.admin import register
            return register(args.register)
        if args.pause or args.abort:
            from autoexec.cli.admin import abort_job, pause_job

            pass_through = _pass_through(args)
            if isinstance(pass_through, str):
                return _fail(pass_through)
            if args.pause:
                return pause_job(args.jobid, devmode=args.devmode, pass_through=pass_through)
            return abort_job(args.jobid, devmode=args.devmode, pass_through=pass_through)
        if args.report:
            from autoexec.jobdir.report import report_main
            return report_main(["--jobid", args.jobid])
        if args.purgejobdata is not None:
            days = _purge_days(args.purgejobdata)
            if isinstance(days, str):
                return _fail(days)
            from autoexec.cli.purge import purge_main
            return purge_main(str(days))
        return run(args)  # a dry run writes nothing, so it takes no lock either
    except ConfigError as exc:
        return _fail(str(exc))


def run_locked(args: argparse.Namespace) -> int:
    """Run mode. Before anything slow: signal handlers, then the job's lock and pid record, so
    ``--abort``/``--pause`` reach the job from its first moments (an abort during loading is
    remembered: no op starts), and a second run of a running job leaves at once, changing nothing."""
    from autoexec.job.control import JobControl
    from autoexec.jobdir.layout import JobDir, UnsafeName
    from autoexec.jobdir.lock import EXIT_BUSY, JobBusy, JobLock

    control = JobControl()
    control.install_signal_handlers()
    try:
        root = JobDir.for_job(autoexec_home() / "data", args.jobid).root
    except UnsafeName as exc:
        return _fail(f"--jobid: {exc}")
    try:
        lock = JobLock.acquire(root, args.jobid)
    except JobBusy as exc:
        return _fail(str(exc), EXIT_BUSY)
    except OSError as exc:
        return _fail(f"{root}: cannot lock the job: {exc.strerror or exc}")
    try:
        lock.honour_request(control)
        _encrypt_config()
        return run(args, control, lock)
    finally:
        lock.release()


def _encrypt_config() -> None:
    """Plaintext secrets typed into config.ini are encrypted in place on every start, as the original does."""
    path = autoexec_home() / "conf" / "config.ini"
    if path.exists():
        from autoexec.conf.secrets import encrypt_config_in_place

        encrypt_config_in_place(path)


def _pass_through(args: argparse.Namespace) -> dict[str, Any] | str:
    """``--passthroughenv``, else ``$PASSTHROUGH_ENV`` (as the original reads it); a string is the error to report."""
    source, text = "--passthroughenv", args.passthroughenv or "{}"
    if text == "{}" and os.environ.get("PASSTHROUGH_ENV"):
        source, text = "PASSTHROUGH_ENV", os.environ["PASSTHROUGH_ENV"]
    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"{source}: invalid JSON: {exc}"
    except RecursionError:
        return f"{source}: JSON nested too deeply"
    if not isinstance(value, dict):
        return f"{source}: must be a JSON object, got {type(value).__name__}"
    return value


def run(args: argparse.Namespace, control: JobControl | None = None, lock: JobLock | None = None) -> int:
    from autoexec.load.loader import JobRequest, parse_group_numbers, parse_id_list, parse_name_list
    from autoexec.models.params import JobInputError

    pass_through = _pass_through(args)
    if isinstance(pass_through, str):
        return _fail(pass_through)
    try:
        req = JobRequest(
            job_id=args.jobid, exec_user=args.execuser, params_file=args.paramsfile, nodes_file=args.nodesfile,
            force=args.force, first_fire=args.firstfire, reuse_console_log=args.reuseconslog, dev_mode=args.devmode,
            no_fire_next=args.nofirenext, pass_through_env=pass_through,
            phase_groups=parse_group_numbers(args.phasegroups),
            phases=parse_name_list(args.phases),
            node_ids=parse_id_list(args.nodes, "nodes"), sql_files=args.sqlfiles,
        )
        if args.dryrun:
            from autoexec.cli.dryrun import dry_run
            return dry_run(req)
        if req.dev_mode and not _console_named():  # skip importing the console's HTTP client (docs/performance.md)
            from autoexec.load.loader import build_runtime

            rt = build_runtime(req, control=control, job_lock=lock)
        else:  # devmode with a console still downloads custom scripts and files from it
            from autoexec.load.production import build_job_runtime

            rt = build_job_runtime(req, control=control, job_lock=lock)
    except JobInputError as exc:
        return _fail(str(exc))
    return execute(rt, verbose=args.verbose, term=args.user_term)


def _console_named() -> bool:
    from autoexec.conf.config import load_config

    return bool(load_config(decrypt=False).server_baseurl or load_settings().console_block)


def execute(rt: JobRuntime, verbose: bool = False, term: str = "") -> int:
    """Runs the job; its Prefect record is written by the machine's recorder from the job's event
    spool (``autoexec.engine.run``), so this process never imports Prefect."""
    from autoexec.cli.progress_show import show_progress
    from autoexec.cli.record import Recorder

    view = show_progress(rt, verbose, term)
    recorder = Recorder(rt, autoexec_home(), verbose=verbose)
    outcome = recorder.run(view)
    view.close(outcome.status, outcome.message)
    from autoexec.load.loader import release_runtime

    if not release_runtime(rt):
        print(f"autoexec: warning: console callbacks of job {rt.job_id} still queued; "
              f"the next run of this job delivers them", file=sys.stderr)
    wait = load_settings().prefect_wait
    if wait is not None:
        if not recorder.wait(wait):
            print(f"autoexec: warning: the Prefect record of job {rt.job_id} is still being written",
                  file=sys.stderr)
    return outcome.exit_code


def entry() -> None:
    """Console-script entry. Everything of our own is already closed (``release_runtime``) when
    :func:`main` returns, so a process that imported Prefect (a
    production job's console blocks) skips Prefect's slow exit."""
    code = main()
    if "prefect" not in sys.modules:
        sys.exit(code)
    from autoexec.conf.prefect_server import exit_after_draining

    exit_after_draining(code, timeout=10)


if __name__ == "__main__":
    entry()
