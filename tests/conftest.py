"""Shared fixtures. Each real-peer fixture set (sshd pool, Tagent agent, fake console) lives in its
own module so the integration tests of one transport never import another's machinery."""
from __future__ import annotations

import compileall
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures_core",
    "tests.fixtures_ssh",
    "tests.fixtures_tagent",
    "tests.fixtures_console",
    "tests.fixtures_postgres",
]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Byte-compile the package and the test helpers once, as an install does: the suite starts
    hundreds of Python processes (CLI jobs, recorders, tools, test agents), and where
    ``PYTHONDONTWRITEBYTECODE`` is set each one would compile every module it imports again."""
    root = Path(__file__).resolve().parent.parent
    for tree in ("autoexec", "tests"):
        compileall.compile_dir(root / tree, quiet=1)
