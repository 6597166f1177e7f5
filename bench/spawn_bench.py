"""How much the starting thread pays per runner-side child: ``subprocess.Popen``, the stdlib's
``os.posix_spawn`` and autoexec's libc ``posix_spawn`` (:mod:`autoexec.transports.spawn`).

    python bench/spawn_bench.py [--starts 500] [--repeat 3]

Each start runs ``/bin/true`` with a 72-entry environment and its output on a pipe; the child is
reaped outside the timed part. ``os.posix_spawn`` is timed without a cwd and without closing
inherited descriptors, which it cannot do before Python 3.13 (see docs/performance.md).
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from autoexec.transports import spawn  # noqa: E402

PROGRAM = "/bin/true"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "=" not in k}
    for i in range(72 - len(env)):
        env[f"AUTOEXEC_BENCH_{i}"] = "x" * 40
    return dict(list(env.items())[:72])


def start_popen(env: dict[str, str], cwd: str) -> Callable[[], None]:
    proc = subprocess.Popen([PROGRAM], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, bufsize=0)

    def reap() -> None:
        assert proc.stdout is not None
        proc.stdout.close()
        proc.wait()
    return reap


def start_stdlib(env: dict[str, str], cwd: str) -> Callable[[], None]:
    read_fd, write_fd = os.pipe()
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDWR, 0),
               (os.POSIX_SPAWN_DUP2, write_fd, 1), (os.POSIX_SPAWN_DUP2, write_fd, 2)]
    pid = os.posix_spawn(PROGRAM, [PROGRAM], env, file_actions=actions, setsid=True,
                         setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    os.close(write_fd)

    def reap() -> None:
        os.close(read_fd)
        os.waitpid(pid, 0)
    return reap


def start_libc(env: dict[str, str], cwd: str) -> Callable[[], None]:
    child = spawn.spawn([PROGRAM], PROGRAM, cwd, env)

    def reap() -> None:
        child.close_output()
        child.wait()
    return reap


def measure(start: Callable[[dict[str, str], str], Callable[[], None]], starts: int) -> tuple[float, float]:
    """(ms of the starting thread's CPU per start, ms of wall time per start)."""
    env, cwd = _env(), os.getcwd()
    cpu = wall = 0.0
    for _ in range(starts):
        c0, w0 = time.thread_time(), time.perf_counter()
        reap = start(env, cwd)
        cpu += time.thread_time() - c0
        wall += time.perf_counter() - w0
        reap()
    return cpu / starts * 1000, wall / starts * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ways: list[tuple[str, Callable[[dict[str, str], str], Callable[[], None]]]] = [
        ("subprocess.Popen", start_popen), ("os.posix_spawn (stdlib)", start_stdlib)]
    if spawn._LIBC is not None:
        ways.append(("libc posix_spawn (autoexec)", start_libc))
    else:
        print("libc posix_spawn unavailable here (AUTOEXEC_SPAWN=popen, or not glibc >= 2.34)")
    print(f"{args.starts} starts of {PROGRAM}, 72-entry environment, median of {args.repeat} rounds")
    print(f"{'way':30} {'CPU ms/start':>13} {'wall ms/start':>14}")
    for name, start in ways:
        runs = [measure(start, args.starts) for _ in range(args.repeat)]
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        print(f"{name:30} {cpu:13.3f} {wall:14.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
