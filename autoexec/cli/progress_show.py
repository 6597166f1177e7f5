"""Which progress view a CLI job gets (the live ``rich`` one on a terminal, the plain one elsewhere),
attached to the job's console log: apart from both views, so progress.py and progress_live.py
do not import each other."""
from __future__ import annotations

import sys

from autoexec.cli.progress import JobProgress, PlainView
from autoexec.job.runtime import JobRuntime


def make_view(rt: JobRuntime, verbose: bool = False, tty: bool | None = None, term: str = "") -> JobProgress:
    """The live view on a terminal, the plain one elsewhere; it replaces the raw echo of the
    console log on a terminal (``-v`` shows those lines again, inside the view)."""
    interactive = sys.stdout.isatty() if tty is None else tty
    args = (rt.job_id, str(rt.jobdir.root), str(rt.jobdir.console_log), verbose)
    view: JobProgress
    if interactive:
        from autoexec.cli.progress_live import LiveView  # deferred: rich only on a terminal

        view = LiveView(*args, term=term)
    else:
        view = PlainView(*args)
    return view


def attach(rt: JobRuntime, view: JobProgress) -> None:
    """Shows ``view`` the console log's lines (unless they are echoed raw already:
    ``AUTOEXEC_ECHO=1`` without a terminal). The job's events reach it as a sink of the run."""
    echoing = rt.console.echoing
    if view.owns_terminal and echoing:
        rt.console.set_echo(None)
        echoing = False
    if not echoing:
        rt.console.hooks.append(view.console_line)


def show_progress(rt: JobRuntime, verbose: bool = False, term: str = "") -> JobProgress:
    """The CLI's one call before running a job: the right view, attached and started; the caller
    runs the job with the view as one of its event sinks."""
    view = make_view(rt, verbose, term=term)
    attach(rt, view)
    view.start()
    return view
