"""200 SSH nodes over 10 sshd, login shells noisy on both streams, a busy loop on every core: no
node may fail or come back with a byte changed. Two repetitions here; ``bench/ssh_noise_soak.py``
runs the full twenty."""
from __future__ import annotations

import os
import uuid
from typing import Iterator

import pytest

from tests.fixtures_core import JobFiles
from tests.noise_soak import cpu_hog, failures, nodes_text, soak_nodes, soak_params
from tests.sshd_pool import Account, Sshd, SshdPool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

NODES = 200
SERVERS = 10
REPEAT = int(os.environ.get("AUTOEXEC_TEST_SOAK_REPEAT", "2"))


@pytest.fixture
def ten_sshd(sshd_pool: SshdPool) -> Iterator[list[int]]:
    """Plain sshd of its own: the pool also holds servers other tests made unusual on purpose."""
    servers: list[Sshd] = []
    try:
        for _ in range(SERVERS):
            servers.append(sshd_pool.start_sshd())
        yield [server.port for server in servers]
    finally:
        for server in servers:
            server.stop()
            sshd_pool.servers.remove(server)


def test_two_hundred_noisy_nodes_under_cpu_load(jobs: JobFiles, ten_sshd: list[int], noisy_account: Account) -> None:
    nodes = soak_nodes(ten_sshd, noisy_account, NODES)
    job = f"9{uuid.uuid4().int % 10**9}"  # remote dirs are named by job id: never reuse one
    with cpu_hog():
        for round_no in range(REPEAT):
            rt, outcome = jobs.run(f"{job}{round_no}", soak_params(), nodes_text(nodes), force=True)
            bad = failures(rt.jobdir, nodes)
            if bad or outcome.status != "succeed":
                pytest.fail(f"round {round_no}: {len(bad)} nodes failed, job {outcome.status}:\n" + "\n".join(bad[:20]))
