"""Node logs in the Prefect run logs, so the UI shows what a node did without the runner host.

The node log file stays the source (masked, tailed by the console); Prefect gets one bounded copy
of its tail when the node ends: one read and one log record per node, nothing per line, so large
jobs do not pay for it. The record goes straight to Prefect's API handler, not through the
logger: a CLI run keeps Prefect's console chatter off (``PREFECT_LOGGING_LEVEL=CRITICAL``) and
must still show its nodes' logs in the UI.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from autoexec.masking import Mask, mask_text

MAX_LINES = 200
MAX_BYTES = 32 * 1024


def tail(path: Path, max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES) -> tuple[str, bool]:
    """The last ``max_lines`` complete lines within ``max_bytes``; ``True`` if some were cut."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            fh.seek(start)
            data = fh.read(max_bytes)
    except OSError:
        return "", False
    cut = start > 0
    lines = data.decode("utf-8", "replace").splitlines()
    if cut and lines:
        lines = lines[1:]  # the first line was entered mid-way
    if len(lines) > max_lines:
        lines = lines[-max_lines:]
        cut = True
    return "\n".join(lines), cut


def forward_node_log(logger: Any, label: str, path: Path, status: str, mask: Mask | None = None) -> None:
    """``logger``: the task run's logger adapter (``get_run_logger()``), whose ``extra`` names the run.
    ``mask``: the job's masker when this process has it (the file is masked already when written;
    masking again is for anything appended to it by other writers)."""
    handlers = [h for h in _api_handlers(logger.logger)]
    if not handlers:
        return
    text, cut = tail(path)
    if not text:
        return
    text = mask_text(text, mask)
    head = mask_text(f"node {label} {status}: log {path.name}" + (" (last lines)" if cut else ""), mask)
    level = logging.ERROR if status in ("failed", "aborted") else logging.INFO
    record = logger.logger.makeRecord(logger.logger.name, level, __file__, 0, "%s\n%s", (head, text), None,
                                      extra=dict(logger.extra or {}))
    for handler in handlers:
        handler.handle(record)


def _api_handlers(log: logging.Logger) -> list[logging.Handler]:
    from prefect.logging.handlers import APILogHandler

    found: list[logging.Handler] = []
    current: logging.Logger | None = log
    while current is not None:
        found.extend(h for h in current.handlers if isinstance(h, APILogHandler))
        current = current.parent if current.propagate else None
    return found
