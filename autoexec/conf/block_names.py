"""The settings that name a Prefect block for a job. A module of their own, free of Prefect:
``autoexec.blocks`` imports Prefect on first touch, which the CLI must not do before it has set
Prefect's logging (and a devmode job never does)."""
from __future__ import annotations

CONSOLE_BLOCK_ENV = "AUTOEXEC_CONSOLE_BLOCK"
"""An ``autoexec-console-credentials`` block, used when config.ini names no console."""
MONGODB_BLOCK_ENV = "AUTOEXEC_MONGODB_BLOCK"
NODE_CREDENTIALS_BLOCK_ENV = "AUTOEXEC_NODE_CREDENTIALS_BLOCK"
"""The job's default node credentials block, for nodes without a secret or ``credentialsBlock``."""
