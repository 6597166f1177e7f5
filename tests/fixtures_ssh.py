"""Real-sshd fixtures for SSH transport tests (see :mod:`tests.sshd_pool`)."""
from __future__ import annotations

import os
import shutil
from typing import Iterator

import pytest

from tests.sshd_pool import DEFAULT_MAX_STARTUPS, Sshd, SshdPool, start_pool, unavailable_reason


@pytest.fixture(scope="session")
def sshd_pool() -> Iterator[SshdPool]:
    """``AUTOEXEC_TEST_SSHD`` sets the pool size (default 4)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    pool = start_pool(int(os.environ.get("AUTOEXEC_TEST_SSHD", "4")))
    try:
        yield pool
    finally:
        pool.stop()
        shutil.rmtree(pool.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd_default_limits(sshd_pool: SshdPool) -> Sshd:
    """One sshd with OpenSSH's stock ``MaxStartups 10:30:100`` / ``MaxSessions 10``."""
    return sshd_pool.start_sshd(max_startups=DEFAULT_MAX_STARTUPS, max_sessions=10)


@pytest.fixture
def sshd_dedicated(sshd_pool: SshdPool) -> Iterator[Sshd]:
    """A private sshd a test may kill or break without disturbing the shared ones."""
    server = sshd_pool.start_sshd()
    try:
        yield server
    finally:
        server.stop()
        if server in sshd_pool.servers:
            sshd_pool.servers.remove(server)
