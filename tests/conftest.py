"""Shared fixtures. Each real-peer fixture set (sshd pool, Tagent agent, fake console) lives in its
own module so the integration tests of one transport never import another's machinery."""
from __future__ import annotations

pytest_plugins = [
    "tests.fixtures_core",
    "tests.fixtures_ssh",
    "tests.fixtures_tagent",
    "tests.fixtures_console",
    "tests.fixtures_postgres",
]
