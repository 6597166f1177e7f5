"""Making sure an op a crashed runner left running on a host is gone before it runs again.

Every remote op carries ``AUTOEXEC_JOBID=<job>`` and ``AUTOEXEC_NODE_KEY=<phase>/<node>``; the reap
script kills exactly the processes (and their groups) whose environment holds both, so another
job or node is never hit, and prints one ``autoexec-reap:`` line for the caller."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

REAP_WAIT_SECS = 10
"""How long the script keeps killing and waiting before it reports survivors."""

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


def reap_script(job_id: str, node_key: str, wait_secs: int = REAP_WAIT_SECS) -> str:
    m1 = shlex.quote(f"AUTOEXEC_JOBID={job_id}")
    m2 = shlex.quote(f"{NODE_KEY_ENV}={node_key}")
    loops = max(1, wait_secs * 10)
    return (
        f"m1={m1}; m2={m2}; me=$$; "
        # both entries, whole NUL-separated strings; never this script itself
        "scan() { if grep -zqxF -e x /dev/null 2>/dev/null; [ $? -le 1 ]; then "
        "grep -lsxzF -e \"$m1\" /proc/[0-9]*/environ 2>/dev/null | while read -r f; do "
        "grep -qsxzF -e \"$m2\" \"$f\" && echo \"$f\"; done; "
        "else for f in /proc/[0-9]*/environ; do "
        "tr '\\000' '\\n' < \"$f\" 2>/dev/null | grep -qxF -e \"$m1\" && "
        "tr '\\000' '\\n' < \"$f\" 2>/dev/null | grep -qxF -e \"$m2\" && echo \"$f\"; done; fi "
        "| sed -n 's#^/proc/\\([0-9][0-9]*\\)/environ$#\\1#p' | grep -vx \"$me\"; }; "
        "pg() { sed 's/.*) //' \"/proc/$1/stat\" 2>/dev/null | cut -d' ' -f3; }; "
        # process groups with a member that is not a zombie (a zombie's parent may be slow to reap)
        "live() { sed -n 's/.*) [A-Y] [0-9-]* \\([0-9]*\\) .*/\\1/p' /proc/[0-9]*/stat 2>/dev/null; }; "
        "mine=$(pg $me); found=''; groups=''; i=0; "
        f"while [ $i -lt {loops} ]; do pids=$(scan); [ -z \"$pids\" ] && break; "
        "for p in $pids; do g=$(pg $p); "
        "if [ -n \"$g\" ] && [ \"$g\" -gt 1 ] && [ \"$g\" != \"$mine\" ]; then "
        "kill -9 -\"$g\" 2>/dev/null; groups=\"$groups $g\"; fi; "
        "kill -9 \"$p\" 2>/dev/null; done; found=\"$found $pids\"; i=$((i+1)); sleep 0.1; done; "
        f"j=0; for g in $groups; do while live | grep -qx \"$g\" && [ $j -lt {loops} ]; do "
        "sleep 0.1; j=$((j+1)); done; done; "
        "n=$(for p in $found; do echo \"$p\"; done | sort -u | grep -c .); "
        "echo \"autoexec-reap: reaped $n left $(scan | tr '\\n' ' ')\""
    )


_RESULT = re.compile(r"autoexec-reap: reaped (\d+) left ?([\d ]*)")


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
