"""Finding processes by what ``/proc`` says of them, for tests and benchmarks that must show what a
job left running (we are root, so every process's environment is readable)."""
from __future__ import annotations

import os
from pathlib import Path


def pids_with_env(entry: str) -> list[int]:
    """Processes whose environment holds exactly ``entry`` (``NAME=value``), this one excepted."""
    wanted = entry.encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                if wanted in Path(f"/proc/{name}/environ").read_bytes().split(b"\0"):
                    found.append(int(name))
            except OSError:
                pass
    return found


def cmdline(pid: int) -> bytes:
    """The command line, arguments joined by NUL (empty once the process is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def is_zombie(pid: int) -> bool:
    """Ended but not yet reaped (or gone): it counts as not running."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
