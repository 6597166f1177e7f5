"""Fixtures for the console client: a real fake console on loopback and a client pointed at it."""
from __future__ import annotations

from typing import Iterator

import pytest

from autoexec.console.client import ConsoleClient
from tests.fake_console import TOKEN, USER, FakeConsole


@pytest.fixture
def fake_console() -> Iterator[FakeConsole]:
    console = FakeConsole().start()
    try:
        yield console
    finally:
        console.stop()


@pytest.fixture
def console_client(fake_console: FakeConsole) -> Iterator[ConsoleClient]:
    client = ConsoleClient(fake_console.url, USER, TOKEN, tenant="develop",
                           connect_timeout=2.0, read_timeout=5.0)
    try:
        yield client
    finally:
        client.close()
