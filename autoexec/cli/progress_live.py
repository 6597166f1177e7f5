"""The terminal view of a CLI job: one progress bar per phase (done/total, failed, running,
elapsed), node completions above it in the order they finish, and a table of the failed and
aborted nodes at the end. Imported only when stdout is a terminal, so a job whose output is
captured never pays for importing ``rich`` (Prefect's dependency: nothing is added)."""
from __future__ import annotations

import atexit
import os
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from autoexec.models.status import Status
from autoexec.cli.progress import JobProgress, NodeEnd, PhaseProgress

STYLE: dict[str, str] = {Status.SUCCEED: "green", Status.COMPLETED: "green", Status.FAILED: "bold red", Status.ABORTED: "bold red",
         Status.IGNORED: "yellow", Status.PAUSED: "yellow", Status.SKIPPED: "dim", Status.RUNNING: "cyan"}
MARK: dict[str, str] = {Status.SUCCEED: "✔", Status.FAILED: "✘", Status.ABORTED: "✘", Status.IGNORED: "!", Status.PAUSED: "‖"}


class LiveView(JobProgress):
    owns_terminal = True

    def __init__(self, job_id: str, job_root: str, console_log: str, verbose: bool = False,
                 term: str = "", file: Any = None) -> None:
        super().__init__(job_id, job_root, console_log, verbose)
        # the CLI sets TERM=dumb for the tools it starts; the view draws on the user's terminal
        environ = {**os.environ, "TERM": term or "xterm-256color"}
        self.console = Console(file=file or sys.stdout, highlight=False, _environ=environ)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed[/]"), TextColumn("{task.fields[running]} running"),
            TimeElapsedColumn(), console=self.console, refresh_per_second=4, redirect_stdout=False,
            redirect_stderr=False)
        self.tasks: dict[str, TaskID] = {}

    def start(self) -> None:
        self.progress.start()
        atexit.register(self.progress.stop)  # a run that dies still gives the cursor back

    def _task(self, p: PhaseProgress) -> TaskID:
        task = self.tasks.get(p.name)
        if task is None:
            task = self.tasks[p.name] = self.progress.add_task(escape(p.name), total=p.total or None,
                                                               failed=0, running=0)
        return task

    def changed(self, phase: str) -> None:
        with self.lock:
            p = self.phases[phase]
            task = self._task(p)
            self.progress.update(task, total=p.total or None, completed=p.done, failed=p.failed,
                                 running=len(p.running))

    def node_ended(self, end: NodeEnd) -> None:
        if end.status == Status.SKIPPED:  # done before (a re-run): counted in the bar, not listed
            return
        style = STYLE.get(end.status, "")
        text = f"[{style}]{MARK.get(end.status, '?')} {escape(end.phase)}/{escape(end.node)} {end.status}[/]"
        text += f" {end.duration:.2f}s"
        if end.exit_code not in (None, 0):
            text += f" exit {end.exit_code}"
        if end.message and Status.of(end.status).failed:
            text += f": {escape(end.message)}"
        self.progress.console.print(text)

    def phase_ended(self, phase: PhaseProgress) -> None:
        with self.lock:
            task = self._task(phase)
        style = STYLE.get(phase.status, "")
        self.progress.update(task, description=f"{escape(phase.name)} [{style}]{phase.status}[/]")
        self.progress.stop_task(task)

    def console_line(self, line: str) -> None:
        # the job's own warnings; a node's end is shown by node_ended already
        own_level = line.startswith(("ERROR:", "WARN:")) and not line.split(" ", 1)[-1].startswith("Node(")
        if self.verbose or own_level:
            self.progress.console.print(escape(line), style="dim" if not own_level else "yellow")

    def close(self, status: str, message: str = "") -> None:
        self.progress.stop()
        rows = self.summary_rows()
        style = STYLE.get(status, "")
        self.console.print(f"[{style}]{escape(self.headline(status, message))}[/]")
        if rows:
            table = Table(title="Failed and aborted nodes", title_justify="left")
            for name in ("phase", "node", "status", "exit", "last error", "log"):
                table.add_column(name, overflow="fold")
            for row in rows:
                table.add_row(*(escape(cell) for cell in row))
            self.console.print(table)
        self.console.print(f"Console log: {escape(self.console_log)}")
        self.console.print(f"Node logs:   {escape(self.job_root)}/log/<phase>/<node>.txt")
