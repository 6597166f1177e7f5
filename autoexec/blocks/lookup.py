"""Loading the project's blocks by name from inside a job, once per process.

Jobs name blocks through settings (``AUTOEXEC_MONGODB_BLOCK``, ``AUTOEXEC_NODE_CREDENTIALS_BLOCK``,
a node's ``credentialsBlock`` field), so deployments need no secrets in config.ini. Loading costs
an API round trip: cache per name, and only import Prefect when a block is actually named.
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import TYPE_CHECKING, Iterator, TypeVar

if TYPE_CHECKING:
    from prefect.blocks.core import Block

    from autoexec.blocks.console import ConsoleCredentials
    from autoexec.blocks.credentials import NodeCredentials
    from autoexec.blocks.mongodb import MongoDBConnection

from autoexec.conf.errors import AutoexecError


class BlockUnavailable(AutoexecError):
    """The named block cannot be loaded; the message names it and says why in one line."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def _api() -> Iterator[None]:
    """The API a job talks to, even from node threads: jobs may load a block before the CLI points
    Prefect at the embedded server, and threads do not inherit Prefect's settings context."""
    from autoexec.conf.config import autoexec_home
    from autoexec.conf.prefect_server import ensure_api

    url = ensure_api(autoexec_home()) or os.environ.get("PREFECT_API_URL")
    if not url:
        yield
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


B = TypeVar("B", bound="Block")


def _load(cls: type[B], name: str) -> B:
    try:
        with _api():
            block = cls.load(name)
    except Exception as exc:  # noqa: BLE001 - unknown name, API down, schema mismatch
        raise BlockUnavailable(f"{cls.get_block_type_slug()} block {name!r}: {_first_line(exc)}") from None
    if not isinstance(block, cls):  # Block.load hands back a coroutine when called inside an event loop
        block.close()
        raise BlockUnavailable(f"{cls.get_block_type_slug()} block {name!r}: loaded inside an event loop")
    return block


@functools.lru_cache(maxsize=64)
def node_credentials(name: str) -> NodeCredentials:
    from autoexec.blocks.credentials import NodeCredentials

    return _load(NodeCredentials, name)


@functools.lru_cache(maxsize=8)
def mongodb_connection(name: str) -> MongoDBConnection:
    from autoexec.blocks.mongodb import MongoDBConnection

    return _load(MongoDBConnection, name)


def console_credentials(name: str) -> ConsoleCredentials:
    """Not cached: a rotated token must reach the next job of a long-lived worker process."""
    from autoexec.blocks.console import ConsoleCredentials

    return _load(ConsoleCredentials, name)
