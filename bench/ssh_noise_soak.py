"""Soak: N nodes over S local sshd whose test account's login shells are noisy on stdout and stderr
(profile, .bashrc, .bash_logout), with a busy loop on every core, repeated R times. Prints every
node that failed or whose fetched file differs from what the host hashed; exits 1 if any did.

    python bench/ssh_noise_soak.py [--nodes 200] [--sshd 10] [--repeat 20] [--no-hog]

The suite runs the same check twice (tests/integration/test_ssh_noise_stress.py). Needs root and
/usr/sbin/sshd; creates (and removes) a throwaway user and AUTOEXEC_HOME.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--sshd", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-hog", action="store_true", help="do not load the CPUs")
    args = parser.parse_args()

    from tests.fixtures_core import JobFiles
    from tests.noise_soak import cpu_hog, failures, nodes_text, soak_nodes, soak_params
    from tests.sshd_pool import NOISY_DOTFILES, create_account, remove_account, start_pool

    work = Path(tempfile.mkdtemp(prefix="autoexec-soak-"))
    os.environ["AUTOEXEC_HOME"] = str(work / "home")
    (work / "home").mkdir()
    pool = start_pool(args.sshd)
    account = create_account("/bin/bash", NOISY_DOTFILES)
    total_bad = 0
    run_id = f"9{os.getpid()}"  # remote dirs are named by job id: never reuse one
    try:
        jobs = JobFiles(work / "home", work)
        nodes = soak_nodes(pool.ports, account, args.nodes)
        with cpu_hog() if not args.no_hog else contextlib.nullcontext():
            for round_no in range(args.repeat):
                started = time.monotonic()
                rt, outcome = jobs.run(f"{run_id}{round_no:03d}", soak_params(), nodes_text(nodes), force=True)
                bad = failures(rt.jobdir, nodes)
                total_bad += len(bad)
                print(f"round {round_no + 1}/{args.repeat}: {args.nodes - len(bad)}/{args.nodes} nodes exact, "
                      f"job {outcome.status}, {time.monotonic() - started:.1f} s", flush=True)
                for line in bad:
                    print(f"  FAILED {line}", flush=True)
                shutil.rmtree(rt.jobdir.root, ignore_errors=True)
    finally:
        remove_account(account)
        pool.stop()
        shutil.rmtree(pool.workdir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{total_bad} failed node runs in {args.repeat} rounds of {args.nodes} nodes over {args.sshd} sshd"
          f"{'' if args.no_hog else ' with every core busy'}")
    return 1 if total_bad else 0


if __name__ == "__main__":
    sys.exit(main())
