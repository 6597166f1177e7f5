"""Prefect blocks of the runner; ``prefect block register -m autoexec.blocks`` registers them all."""
from __future__ import annotations

from autoexec.blocks.console import ConsoleCredentials
from autoexec.blocks.credentials import NodeCredentials
from autoexec.blocks.mongodb import MongoDBConnection

__all__ = ["ConsoleCredentials", "MongoDBConnection", "NodeCredentials"]
