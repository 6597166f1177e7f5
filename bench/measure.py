"""Timing an ``autoexec`` CLI run the way an operator sees it, for both benchmarks."""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path


def run_cli(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, int, str, float]:
    """(wall s, exit code, stderr tail, peak RSS MB of this run alone). ``wait4`` gives the run's own
    peak RSS; ``RUSAGE_CHILDREN`` would keep the maximum of every earlier child of the benchmark."""
    wall, code, err, rss, _ = run_cli_usage(argv, env, cwd)
    return wall, code, err, rss


def run_cli_usage(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, int, str, float, float]:
    """:func:`run_cli` plus the CPU seconds (user + system) of the process and of the tools it ran
    and waited for (not the detached recorder): steadier than wall time on a shared machine."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        err.seek(0)
        return wall, os.waitstatus_to_exitcode(status), err.read()[-2000:].decode(errors="replace"), \
            usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def wait_recorded(home: Path, started: float, timeout: float = 300) -> float:
    """Seconds from ``started`` until the job's detached recorder removed its spool, i.e. the flow
    run is complete in Prefect. Waiting also keeps it from competing with the next measurement."""
    spool = home / "prefect" / "spool"
    deadline = time.perf_counter() + timeout
    while any(spool.glob("*.jsonl")) and time.perf_counter() < deadline:
        time.sleep(0.02)
    return time.perf_counter() - started
