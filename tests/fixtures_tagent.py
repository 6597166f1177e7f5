"""Tagent test agents on 127.0.0.1 (plain, secure, GBK). Function scoped: starting one costs a
thread and a socket, and tests flip fault switches on the agent they get."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.tagent_agent import TagentTestAgent

TAGENT_TEST_PASSWORD = "Verify-Pass-123"


def _agent(tmp_path: Path, **kwargs: object) -> Iterator[TagentTestAgent]:
    agent_tmp = tmp_path / "agent-tmp"
    agent_tmp.mkdir()
    agent = TagentTestAgent(password=TAGENT_TEST_PASSWORD, tmpdir=str(agent_tmp), **kwargs)  # type: ignore[arg-type]
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def tagent_agent(tmp_path: Path) -> Iterator[TagentTestAgent]:
    """Plain-protocol (``Tagent1.1``) UTF-8 agent; ``$TMPDIR`` is ``tmp_path/agent-tmp``."""
    yield from _agent(tmp_path)


@pytest.fixture
def tagent_agent_secure(tmp_path: Path) -> Iterator[TagentTestAgent]:
    """Secure-protocol (``Tagent1.1s``, RC4 per chunk) agent."""
    yield from _agent(tmp_path, secure=True)


@pytest.fixture
def tagent_agent_gbk(tmp_path: Path) -> Iterator[TagentTestAgent]:
    """Agent announcing GBK, as on a Chinese-locale host; it never transcodes, like the real one."""
    yield from _agent(tmp_path, charset="GBK")


@pytest.fixture(params=["plain", "secure"])
def tagent_agent_any(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TagentTestAgent]:
    """Runs a test once per protocol mode."""
    yield from _agent(tmp_path, secure=request.param == "secure")
