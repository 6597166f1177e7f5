"""Real-sshd fixtures for SSH transport tests (see :mod:`tests.sshd_pool`)."""
from __future__ import annotations

import os
import shutil
from typing import Iterator

import pytest

from tests.sshd_pool import (DEFAULT_MAX_STARTUPS, NOISY_DOTFILES, Account, Sshd, SshdPool, create_account,
                             path_without, remove_account, start_pool, unavailable_reason)


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


# ------------------------------------------------------------------------------------ unlike hosts


@pytest.fixture(scope="session")
def noisy_account(sshd_pool: SshdPool) -> Iterator[Account]:
    """A bash account whose profile, ``.bashrc`` and ``.bash_logout`` print to stdout and stderr."""
    account = create_account("/bin/bash", NOISY_DOTFILES)
    try:
        yield account
    finally:
        remove_account(account)


@pytest.fixture(scope="session")
def dash_account(sshd_pool: SshdPool) -> Iterator[Account]:
    """An account whose login shell is ``/bin/sh`` (dash here), with a noisy ``.profile``."""
    account = create_account("/bin/sh", {".profile": NOISY_DOTFILES[".profile"]})
    try:
        yield account
    finally:
        remove_account(account)


def _own_sshd(pool: SshdPool, **kwargs: object) -> Iterator[Sshd]:
    server = pool.start_sshd(**kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
        if server in pool.servers:
            pool.servers.remove(server)


@pytest.fixture(scope="session")
def sshd_one_session(sshd_pool: SshdPool) -> Iterator[Sshd]:
    """An sshd with ``MaxSessions 1``: one channel at a time per connection."""
    yield from _own_sshd(sshd_pool, max_sessions=1)


@pytest.fixture(scope="session")
def sshd_no_base64(sshd_pool: SshdPool) -> Iterator[Sshd]:
    """An sshd whose sessions' PATH has no ``base64`` and no ``openssl`` (before login files run:
    pair it with ``no_base64_account``, whose profile keeps that PATH)."""
    bin_dir = path_without(("base64", "openssl"), sshd_pool.workdir / "bin-without-base64")
    yield from _own_sshd(sshd_pool, extra_config=(f"SetEnv PATH={bin_dir}",))


@pytest.fixture(scope="session")
def no_base64_account(sshd_pool: SshdPool) -> Iterator[Account]:
    """A noisy bash account whose profile sets a PATH without ``base64`` and ``openssl``. Ops read
    the account's login files (``/etc/profile`` resets PATH on Debian), so a host without those
    tools is one whose profile leaves them out."""
    bin_dir = path_without(("base64", "openssl"), sshd_pool.workdir / "bin-without-base64")
    profile = NOISY_DOTFILES[".bash_profile"] + f"PATH={bin_dir}; export PATH\n"
    account = create_account("/bin/bash", {**NOISY_DOTFILES, ".bash_profile": profile})
    try:
        yield account
    finally:
        remove_account(account)


@pytest.fixture(scope="session")
def sshd_tmp_readonly(sshd_pool: SshdPool) -> Iterator[Sshd]:
    """An sshd whose sessions see a ``/tmp`` they cannot write (its own mount namespace)."""
    yield from _own_sshd(sshd_pool, tmp="readonly")


@pytest.fixture(scope="session")
def sshd_tmp_full(sshd_pool: SshdPool) -> Iterator[Sshd]:
    """An sshd whose sessions see a full ``/tmp`` (its own mount namespace)."""
    yield from _own_sshd(sshd_pool, tmp="full")
