"""The root of every error autoexec raises on purpose.

``except AutoexecError`` tells a failure autoexec foresaw and phrased (bad input, an unreachable
host, a console that said no) from a programming error. Each error keeps its own module and, where
it had one, its builtin base (``ValueError``, ``LookupError``), so existing ``except`` clauses
still catch it. This module imports nothing, so any module may use it.
"""
from __future__ import annotations


class AutoexecError(Exception):
    """A failure autoexec foresaw; ``str(err)`` is a message fit for a log line."""
