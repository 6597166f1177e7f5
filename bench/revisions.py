"""Benchmark: the same jobs through two revisions of autoexec in one run, interleaved, so that a
change of code is measured against the code before it on the same machine at the same moment.

    python bench/revisions.py [--base cf80e0c] [--head WORKTREE|REV] [--nodes 1,1000] [--ssh 200] [--repeat 6]

``--nodes``: runner-side script op jobs of that many nodes; ``--ssh N``: also a job of one script
op on N SSH nodes over a throwaway local sshd pool (needs root and /usr/sbin/sshd), password auth.

Each revision is exported with ``git archive`` (``--head`` unset: the working tree with its uncommitted changes) and
run with ``PYTHONPATH`` pointing at it, with its own throwaway ``AUTOEXEC_HOME`` and embedded
Prefect server. Runs alternate base/head, head/base, ... so drift in the machine's load falls on
both; each run waits for its recorder to finish before the next starts. Prints, per node count, the
median wall time and peak RSS of the CLI process for each revision and head/base ratios.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "bench"), str(REPO)]
from core_fanout import write_job  # noqa: E402
from measure import run_cli_usage, wait_recorded  # noqa: E402
from ssh_fanout import write_ssh_job  # noqa: E402

#: main just before the code-structure work (layout, settings object, enums, registry, job-state split)
DEFAULT_BASE = "cf80e0c"


@dataclass
class Revision:
    label: str
    tree: Path
    home: Path
    walls: dict[str, list[float]] = field(default_factory=dict)
    rss: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def module(self, *names: str) -> str:
        """The first of ``names`` this revision has (the package was re-laid out between revisions)."""
        return next(n for n in names if (self.tree / (n.replace(".", "/") + ".py")).exists())

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AUTOEXEC_"))}
        env.update(AUTOEXEC_HOME=str(self.home), PYTHONPATH=str(self.tree))
        return env

    def compile(self) -> None:
        """Byte-compile the tree as an install does, so neither revision pays for compiling its
        modules at every start (``PYTHONDONTWRITEBYTECODE`` would otherwise keep it so)."""
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(self.tree / "autoexec")], check=True)

    def server(self, action: str) -> None:
        subprocess.run([sys.executable, "-m", self.module("autoexec.cli.server", "autoexec.prefect_env"), action],
                       env=self.env(), check=action == "start", capture_output=True, cwd=self.tree)


def export(rev: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_job(rev: Revision, params: Path, nodes: Path, job: str, width: int) -> tuple[float, float, float]:
    env = rev.env()
    env["AUTOEXEC_MAX_PARALLEL"] = str(width)
    cli = rev.module("autoexec.cli.command", "autoexec.cli")
    started = time.perf_counter()
    wall, code, err, rss, cpu = run_cli_usage([sys.executable, "-m", cli, "-d", "-j", job, "-p", str(params), "-n", str(nodes)], env,
                                    cwd=rev.tree)  # ``-m`` puts the cwd first on sys.path
    if code != 0:
        raise SystemExit(f"{rev.label}: autoexec failed ({code}): {err}")
    wait_recorded(rev.home, started)
    return wall, rss, cpu


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default=DEFAULT_BASE, help="git revision measured as the baseline")
    ap.add_argument("--head", default="", help="git revision measured against it (default: this working tree, "
                    "uncommitted changes included)")
    ap.add_argument("--nodes", default="1,1000")
    ap.add_argument("--ssh", type=int, default=0, help="nodes of an SSH job (0: none)")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=6)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ae-revisions-"))
    base = Revision(f"base {args.base}", export(args.base, tmp / "base"), tmp / "home-base")
    # The head is exported too, even for the working tree (its uncommitted changes included), so
    # both revisions run from the same kind of place: run from the repository itself, the same
    # code measured 1.4x slower than its own export on this machine.
    worktree = subprocess.run(["git", "-C", str(REPO), "stash", "create"], capture_output=True, text=True,
                              check=True).stdout.strip() or "HEAD"
    head_tree = export(args.head or worktree, tmp / "head")
    head = Revision(f"head {args.head or 'worktree'}", head_tree, tmp / "home-head")
    revisions = (base, head)
    pool = None
    try:
        for rev in revisions:
            rev.compile()
            rev.server("start")
        jobs = {f"runner {n}": write_job(tmp, int(n)) for n in args.nodes.split(",") if n}
        if args.ssh:
            from tests.sshd_pool import start_pool

            pool = start_pool(4)
            jobs[f"ssh {args.ssh}"] = write_ssh_job(tmp, "ssh", args.ssh, args.width, pool.ports, pool.user,
                                                    pool.password, None)
        for name, (params, nodes) in jobs.items():
            for rev in revisions:  # a first run of each warms the page cache and the server; not counted
                run_job(rev, params, nodes, f"warm{len(rev.walls)}", args.width)
            for rep in range(args.repeat):
                for rev in revisions if rep % 2 == 0 else revisions[::-1]:
                    wall, rss, cpu = run_job(rev, params, nodes, f"{len(rev.walls)}{rep}", args.width)
                    rev.walls.setdefault(name, []).append(wall)
                    rev.rss.setdefault(name, []).append(rss)
                    rev.cpu.setdefault(name, []).append(cpu)
        print(f"{'job':<10} {'revision':<22} {'wall s median (min-max)':>24} {'CPU s (process + tools)':>24} "
              f"{'peak RSS MB':>22}")
        for name in jobs:
            for rev in revisions:
                print(f"{name:<10} {rev.label:<22} {spread(rev.walls[name]):>24} {spread(rev.cpu[name]):>24} "
                      f"{spread(rev.rss[name]):>22}")
            ratios = [statistics.median(getattr(head, k)[name]) / statistics.median(getattr(base, k)[name])
                      for k in ("walls", "cpu", "rss")]
            print(f"{name:<10} {'head/base (medians)':<22} {ratios[0]:>24.3f} {ratios[1]:>24.3f} {ratios[2]:>22.3f}")
    finally:
        for rev in revisions:
            rev.server("stop")
        if pool is not None:
            pool.stop()
            shutil.rmtree(pool.workdir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
