"""``autoexec report --jobid J``: one self-contained HTML page about a job, from its job directory.

Everything comes from the files the runner already writes (params, nodes, status, node logs and
their history links, outputs, the console log and its generations), so a report can be made at
any time — while the job runs, after it, on another machine with a copy of the directory — and
needs neither Prefect nor the console. The page has no external resources (inline CSS, node logs
embedded up to a budget, then linked relative to the page), so it can be mailed or archived.
"""
from __future__ import annotations

import argparse
import html
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoexec.jobdir.layout import JobDir, UnsafeName, safe_name
from autoexec.jobdir.logs import last_error_lines
from autoexec.models.status import Status
from autoexec.jobdir.store import read_json

LOG_TAIL_BYTES = 32 * 1024
EMBED_BUDGET_BYTES = 16 * 1024 * 1024
_DURATION = re.compile(r"ended, duration:([\d.]+) second")
_RUN_START = re.compile(r"^(\d\d:\d\d:\d\d) INFO: JobId:(\S+) start\.\.\.$")
_RUN_END = re.compile(r"^(\d\d:\d\d:\d\d) INFO: Job (\S+) finished, status:(\w+)\.$")
_SECRET_KEY = re.compile(r"pass(word|wd)?|secret|token|credential", re.I)

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.cell{text-align:center;white-space:nowrap}
.succeed,.completed{background:#d9f2d9}.failed,.aborted{background:#f8d0d0}.ignored,.paused,.waitInput{background:#fbeec0}
.running{background:#d6e6fa}.pending,.none{background:#fafafa;color:#999}.skipped{background:#eee}
pre{background:#f7f7f7;border:1px solid #ddd;padding:6px;max-height:30em;overflow:auto;white-space:pre-wrap}
details{margin:.3em 0}summary{cursor:pointer}.muted{color:#777}section:target{outline:3px solid #f0a000}
section.log p{margin:.2em 0}section.log .body{display:none}section.log:target .body,section.log.open .body{display:block}
"""


@dataclass
class NodeCell:
    phase: str
    triple: str
    status: str = "none"
    duration: float | None = None
    log: Path | None = None
    history: list[tuple[str, str, str]] = field(default_factory=list)
    """(time, status, user) of each earlier run, from the node log's history links."""

    @property
    def anchor(self) -> str:
        return "log-" + re.sub(r"[^A-Za-z0-9_.-]", "_", f"{self.phase}--{self.triple}")


@dataclass
class JobRun:
    generation: str
    start: str
    end: str = ""
    status: str = "running or lost"


def _tail(path: Path, limit: int = LOG_TAIL_BYTES) -> tuple[str, bool]:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace"), size > limit
    except OSError:
        return "", False


def _phases(jobdir: JobDir) -> list[tuple[int, str, dict[str, Any]]]:
    """(group, phase name, phase dict) in run order; from status dirs when params are gone."""
    params = read_json(jobdir.params)
    found: list[tuple[int, str, dict[str, Any]]] = []
    if isinstance(params, dict):
        for group in params.get("runFlow") or []:
            for phase in (group or {}).get("phases") or []:
                if isinstance(phase, dict) and phase.get("phaseName"):
                    found.append((group.get("groupNo", 0), str(phase["phaseName"]), phase))
    known = {safe_name(name) for _, name, _ in found}
    if jobdir.status_dir.is_dir():
        for extra in sorted(p.name for p in jobdir.status_dir.iterdir() if p.is_dir()):
            if extra not in known:
                found.append((-1, extra, {}))
    return found


def _node_triples(jobdir: JobDir) -> list[str]:
    triples: list[str] = []
    try:
        lines = jobdir.nodes.read_text(encoding="utf-8").splitlines()[1:]
    except OSError:
        lines = []
    for line in lines:
        try:
            node = json.loads(line)
            triples.append(safe_name(f"{node['host']}-{'' if node.get('port') is None else node['port']}-{node['resourceId']}"))
        except (ValueError, KeyError, TypeError):
            continue
    return triples


def _cell(jobdir: JobDir, phase: str, triple: str) -> NodeCell:
    cell = NodeCell(phase, triple)
    status = read_json(jobdir.node_status(phase, triple))
    if isinstance(status, dict):
        cell.status = str(status.get("status") or Status.PENDING)
    log = jobdir.node_log(phase, triple)
    if log.is_file():
        cell.log = log
        text, _ = _tail(log, 4096)
        found = _DURATION.findall(text)
        if found:
            cell.duration = float(found[-1])
    hislog = jobdir.node_hislog_dir(phase, triple)
    if hislog.is_dir():
        for entry in sorted(hislog.iterdir()):
            parts = entry.name[:-4].split(".") if entry.name.endswith(".txt") else []
            if len(parts) >= 3:
                cell.history.append((parts[0], parts[1], ".".join(parts[2:])))
    return cell


def _runs(jobdir: JobDir) -> list[JobRun]:
    """Every invocation of the job: each console-log generation (one per ``--firstfire``, kept as a
    history link) holds the start and end lines of the runs appended to it."""
    generations: list[tuple[str, Path]] = []
    if jobdir.console_hislog_dir.is_dir():
        generations = [(p.name[:-4], p) for p in sorted(jobdir.console_hislog_dir.iterdir()) if p.name.endswith(".txt")]
    seen_inodes = {p.stat().st_ino for _, p in generations if p.exists()}
    if jobdir.console_log.is_file() and jobdir.console_log.stat().st_ino not in seen_inodes:
        generations.append(("current", jobdir.console_log))
    runs: list[JobRun] = []
    for name, path in generations:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        current: JobRun | None = None
        for line in lines:
            start = _RUN_START.match(line)
            if start:
                current = JobRun(name, start.group(1))
                runs.append(current)
                continue
            end = _RUN_END.match(line)
            if end and current is not None:
                current.end, current.status = end.group(1), end.group(3)
                current = None
    return runs


def _masked_outputs(data: Any, secret_keys: set[str]) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {}
    shown: dict[str, Any] = {}
    for key, value in data.items():
        if key == "hiddenNodeEnv":
            continue
        if isinstance(value, dict):
            value = {k: ("******" if k in secret_keys or _SECRET_KEY.search(k) else v) for k, v in value.items()}
        shown[key] = value
    return shown


def _secret_output_names(phases: list[tuple[int, str, dict[str, Any]]]) -> set[str]:
    names: set[str] = set()

    def walk(ops: list[Any]) -> None:
        for op in ops or []:
            if not isinstance(op, dict):
                continue
            for name, spec in (op.get("output") or {}).items():
                if isinstance(spec, dict) and str(spec.get("type", "")).lower() in ("password", "secret"):
                    names.add(name)
            walk(op.get("if") or [])
            walk(op.get("else") or [])

    for _, _, phase in phases:
        walk(phase.get("operations") or [])
    return names


def render(jobdir: JobDir, job_id: str, out_dir: Path) -> str:
    e = html.escape
    phases = _phases(jobdir)
    triples = _node_triples(jobdir)
    runner_phases = {name for _, name, _ in phases if jobdir.node_status(name, "local-0-0").exists()}
    columns = (["local-0-0"] if runner_phases or not triples else []) + triples
    cells = {(name, t): _cell(jobdir, name, t) for _, name, _ in phases for t in columns}
    problems = [c for c in cells.values() if Status.of(c.status).failed]
    runs = _runs(jobdir)
    secret_names = _secret_output_names(phases)

    def rel(path: Path) -> str:
        return e(os.path.relpath(path, out_dir))

    body = [f"<h1>autoexec job {e(job_id)}</h1>",
            f"<p class=muted>Job directory {e(str(jobdir.root))}; report made {e(time.strftime('%Y-%m-%d %H:%M:%S'))}. "
            f"Last run: <b class='{e(runs[-1].status) if runs else 'none'}'>{e(runs[-1].status) if runs else 'never run'}</b>.</p>"]
    body.append(f"<h2 id=failed>Failed and aborted nodes ({len(problems)})</h2>")
    if problems:
        body.append("<table class=problems><tr><th>phase</th><th>node</th><th>status</th><th>last error</th>"
                    "<th>log</th></tr>")
        for c in problems:
            error = " | ".join(last_error_lines(str(c.log), 2)) if c.log else ""  # the tool's line, the reason
            body.append(f"<tr class='problem {e(c.status)}'><td>{e(c.phase)}</td><td class=node>{e(c.triple)}</td>"
                        f"<td>{e(c.status)}</td><td>{e(error)}</td><td><a href='#{c.anchor}'>log</a></td></tr>")
        body.append("</table>")
    else:
        body.append("<p>None.</p>")
    body.append("<h2>Nodes × phases</h2><table class=matrix><tr><th>node</th>"
                + "".join(f"<th>{e(name)}<br><span class=muted>group {g}</span></th>" for g, name, _ in phases) + "</tr>")
    for t in columns:
        row = [f"<tr><th>{e(t)}</th>"]
        for _, name, _ in phases:
            c = cells[(name, t)]
            if c.status == "none":
                row.append("<td class='cell none'>·</td>")
                continue
            took = f"<br><span class=muted>{c.duration:.2f}s</span>" if c.duration is not None else ""
            row.append(f"<td class='cell {e(c.status)}'><a href='#{c.anchor}'>{e(c.status)}</a>{took}</td>")
        body.append("".join(row) + "</tr>")
    body.append("</table>")
    body.append("<h2>Runs of this job</h2><table><tr><th>console log generation</th><th>started</th><th>ended</th><th>status</th></tr>")
    for run in runs:
        body.append(f"<tr><td>{e(run.generation)}</td><td>{e(run.start)}</td><td>{e(run.end)}</td>"
                    f"<td class='{e(run.status)}'>{e(run.status)}</td></tr>")
    body.append("</table>")
    if jobdir.console_log.is_file():
        text, cut = _tail(jobdir.console_log, 4 * LOG_TAIL_BYTES)
        body.append(f"<details><summary>Console log (<a href='{rel(jobdir.console_log)}'>file</a>"
                    f"{', last part' if cut else ''})</summary><pre>{e(text)}</pre></details>")
    body.append("<h2>Outputs</h2>")
    for t in columns:
        data = _masked_outputs(read_json(jobdir.node_output(t)), secret_names)
        if data:
            body.append(f"<details><summary>{e(t)}</summary><pre>{e(json.dumps(data, indent=2, ensure_ascii=False))}</pre></details>")
    body.append("<h2>Node logs</h2>")
    budget = EMBED_BUDGET_BYTES
    for c in cells.values():
        if c.log is None:
            continue
        history = "".join(f"<li>{e(when)} {e(status)} by {e(user)}</li>" for when, status, user in c.history)
        text, cut = _tail(c.log) if budget > 0 else ("", True)
        budget -= len(text)
        shown = f"<pre>{e(text)}</pre>" if text else "<p class=muted>(not embedded: report size budget reached)</p>"
        # the log shows when its matrix cell is clicked (:target), failed ones always; no script needed
        body.append(f"<section id='{c.anchor}' class='log{' open' if Status.of(c.status).failed else ''}'><p>"
                    f"<a href='#{c.anchor}'><b>{e(c.phase)}/{e(c.triple)}</b></a> <span class='{e(c.status)}'>{e(c.status)}</span> "
                    f"(<a href='{rel(c.log)}'>file</a>{', last part' if cut else ''})</p><div class=body>{shown}"
                    f"{'<p>Runs:</p><ul>' + history + '</ul>' if history else ''}</div></section>")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>autoexec job {e(job_id)}</title><style>{CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


def write_report(jobdir: JobDir, job_id: str, output: Path | None = None) -> Path:
    target = output or jobdir.root / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    text = render(jobdir, job_id, target.parent.resolve())
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return target


def report_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="autoexec report", description="Write a job's HTML report.")
    parser.add_argument("-j", "--jobid", required=True)
    parser.add_argument("-o", "--output", default="", help="file to write (default: <job dir>/report.html)")
    args = parser.parse_args(argv)
    from autoexec.conf.config import load_config

    try:
        jobdir = JobDir.for_job(load_config().data_dir, args.jobid)
    except UnsafeName as exc:
        print(f"autoexec: error: --jobid: {exc}", file=sys.stderr)
        return 2
    if not jobdir.root.is_dir():
        print(f"autoexec: error: --jobid {args.jobid}: no job directory {jobdir.root}", file=sys.stderr)
        return 2
    path = write_report(jobdir, args.jobid, Path(args.output).resolve() if args.output else None)
    print(path)
    return 0
