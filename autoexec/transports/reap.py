"""Making sure an op a crashed runner left running on a host is gone before it runs again.

Every remote op carries ``AUTOEXEC_JOBID=<job>`` and ``AUTOEXEC_NODE_KEY=<phase>/<node>``; the reap
script kills exactly the processes (and their groups) whose environment holds both, so another
job or node is never hit, and prints one ``autoexec-reap:`` line for the caller. An abort's
job-wide kill is the same script (:func:`kill_script`) with the job's entry alone."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Sequence

REAP_WAIT_SECS = 10
"""How long the script keeps killing and waiting before it reports survivors."""

JOB_ENV = "AUTOEXEC_JOBID"
"""Environment entry every op of a job carries: what a job-wide kill looks for."""
NODE_KEY_ENV = "AUTOEXEC_NODE_KEY"
"""Environment entry naming the (phase, node) an op runs for, beside ``AUTOEXEC_JOBID``."""


@dataclass
class Reaped:
    killed: int = 0
    """Processes of the old op that were still there and were killed."""
    error: str | None = None
    """Why the host could not be checked, or what survived; one line."""
    checked: bool = True
    """False where the host offers no way to look (a Windows agent): nothing was confirmed gone."""


KILL_JOB_WAIT_SECS = 0.5
"""A job-wide kill repeats its scan this long, to catch children forked between scan and kill."""


def kill_script(markers: Sequence[str], wait_secs: float = REAP_WAIT_SECS, groups: bool = True) -> str:
    """The one script that kills by environment: every process (never the script itself) whose
    ``environ`` holds each of ``markers`` as a whole entry is SIGKILLed, with its process group
    when ``groups``; the scan repeats until none is left or ``wait_secs`` ran out, then (with
    ``groups``) waits for those groups to be gone. Hosts without ``/proc`` fall back to
    ``ps eww``. Prints ``autoexec-reap: reaped <count> left <pids>`` (:func:`parse_reap_output`).
    """
    if not markers:
        raise ValueError("kill_script needs at least one marker")
    loops = max(1, int(wait_secs * 10))
    names = [f"m{i}" for i in range(1, len(markers) + 1)]
    sets = "; ".join(f"{name}={shlex.quote(marker)}" for name, marker in zip(names, markers, strict=True))
    more_z = "".join(f' && grep -qsxzF -e "${name}" "$f"' for name in names[1:])
    more_tr = "".join(f" && tr '\\000' '\\n' < \"$f\" 2>/dev/null | grep -qxF -e \"${name}\"" for name in names[1:])
    awk_vars = " ".join(f'-v {name}="${name}"' for name in names)
    awk_seen = "; ".join(f"if($i=={name}) s{name}=1" for name in names)
    awk_all = " && ".join(f"s{name}" for name in names)
    awk_reset = "; ".join(f"s{name}=0" for name in names)
    scan = (
        "scan() { if [ -r /proc/self/environ ]; then "
        "if grep -zqxF -e x /dev/null 2>/dev/null; [ $? -le 1 ]; then "
        f"grep -lsxzF -e \"$m1\" /proc/[0-9]*/environ 2>/dev/null | while read -r f; do true{more_z} && echo \"$f\"; done; "
        "else for f in /proc/[0-9]*/environ; do "
        f"tr '\\000' '\\n' < \"$f\" 2>/dev/null | grep -qxF -e \"$m1\"{more_tr} && echo \"$f\"; done; fi "
        "| sed -n 's#^/proc/\\([0-9][0-9]*\\)/environ$#\\1#p'; "
        f"else ps auxeww 2>/dev/null | awk {awk_vars} "
        f"'{{{awk_reset}; for(i=11;i<=NF;i++){{{awk_seen}}} if({awk_all}) print $2}}'; fi "
        "| grep -vx \"$me\"; }; "
    )
    kill_group = ("g=$(pg $p); if [ -n \"$g\" ] && [ \"$g\" -gt 1 ] && [ \"$g\" != \"$mine\" ]; then "
                  "kill -9 -\"$g\" 2>/dev/null; groups=\"$groups $g\"; fi; ") if groups else ""
    return (
        f"{sets}; me=$$; " + scan
        + "pg() { sed 's/.*) //' \"/proc/$1/stat\" 2>/dev/null | cut -d' ' -f3; }; "
        # process groups with a member that is not a zombie (a zombie's parent may be slow to reap)
        + "live() { sed -n 's/.*) [A-Y] [0-9-]* \\([0-9]*\\) .*/\\1/p' /proc/[0-9]*/stat 2>/dev/null; }; "
        + "mine=$(pg $me); found=''; groups=''; i=0; "
        + f"while [ $i -lt {loops} ]; do pids=$(scan); [ -z \"$pids\" ] && break; "
        + "for p in $pids; do " + kill_group
        + "kill -9 \"$p\" 2>/dev/null; done; found=\"$found $pids\"; i=$((i+1)); sleep 0.1; done; "
        + f"j=0; for g in $groups; do while live | grep -qx \"$g\" && [ $j -lt {loops} ]; do "
        + "sleep 0.1; j=$((j+1)); done; done; "
        + "n=$(for p in $found; do echo \"$p\"; done | sort -u | grep -c .); "
        + "echo \"autoexec-reap: reaped $n left $(scan | tr '\\n' ' ')\""
    )


def reap_script(job_id: str, node_key: str, wait_secs: int = REAP_WAIT_SECS) -> str:
    """Kill what is left of one op: processes of ``job_id`` for ``node_key``, with their groups."""
    return kill_script((f"{JOB_ENV}={job_id}", f"{NODE_KEY_ENV}={node_key}"), wait_secs)


def kill_job_script(job_id: str) -> str:
    """Kill every process of ``job_id`` on the host (job-wide abort): exact ``AUTOEXEC_JOBID``
    entries, so job 123 never hits job 1234."""
    return kill_script((f"{JOB_ENV}={job_id}",), KILL_JOB_WAIT_SECS, groups=False)


_RESULT = re.compile(r"autoexec-reap: reaped (\d+) left ?([\d ]*)")


def survivors(output: str) -> str | None:
    """The pids the script reports still alive (``''``: none), or ``None`` when its report line
    is missing; whatever a login shell printed around it is ignored."""
    matches = [m for m in (_RESULT.fullmatch(ln.strip()) for ln in output.splitlines()) if m is not None]
    return " ".join(matches[-1].group(2).split()) if matches else None


def parse_reap_output(output: str, status: int | None, where: str) -> Reaped:
    """The script's report line, or an error naming ``where`` (host) and what came back. Anything
    else (a login shell's profile or logout noise) is ignored."""
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    matches = [m for m in (_RESULT.fullmatch(ln.strip()) for ln in lines) if m is not None]
    match = matches[-1] if matches else None
    if match is None:
        tail = " ".join(" ".join(lines[-2:]).split())[:200]
        return Reaped(error=f"{where}: checking for processes of the previous run failed "
                            f"(status {status}){': ' + tail if tail else ''}")
    killed, left = int(match.group(1)), match.group(2).split()
    if left:
        return Reaped(killed, f"{where}: processes of the previous run still alive after SIGKILL: {' '.join(left)}")
    return Reaped(killed)
