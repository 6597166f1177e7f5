"""Log fail patterns installed by ``native/failkeys``, checked per node-log line.

A match fails the op during whose run the line was written, and is recorded ``failed`` so a
resumed job runs it again (the original recorded ``succeed`` and failed every later op instead).
Rules: docs/design.md."""
from __future__ import annotations

import re
import threading
from collections.abc import Sequence

from autoexec.conf.errors import AutoexecError

__all__ = ["FailKeys", "FailKeysError"]


class FailKeysError(AutoexecError, ValueError):
    """Bad failkeys configuration; the message names the offending option or regex."""


def _compile(pattern: str, what: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise FailKeysError(f"Invalid {what} regex {pattern!r}: {exc}") from None


class FailKeys:
    """Per-node stateful matcher; thread-safe because remote output may be fed from a reader."""

    def __init__(self, patterns: Sequence[str], operator: str = "or", exclude: str | None = None, *,
                 fail_ignore: bool = False) -> None:
        mode = (operator or "or").strip().lower()
        if mode not in ("and", "or"):
            raise FailKeysError(f"Invalid failkeys operator {operator!r}, expected 'and' or 'or'")
        self.patterns: tuple[str, ...] = tuple(p for p in patterns if p)
        self.operator = mode
        self.exclude = exclude or None
        self.fail_ignore = fail_ignore
        self._regexes = [_compile(p, "fail pattern") for p in self.patterns]
        self._exclude = _compile(self.exclude, "exclude") if self.exclude else None
        self._lock = threading.Lock()
        self._current: str | None = None
        self._hit = False

    def match(self, line: str) -> str | None:
        """Description of what matched ``line`` (pure; no state change), or None."""
        if not self._regexes:
            return None
        text = line.rstrip("\r\n")
        if self._exclude is not None and self._exclude.search(text):
            return None
        if self.operator == "and":
            if all(r.search(text) for r in self._regexes):
                return " and ".join(self.patterns)
            return None
        for pattern, regex in zip(self.patterns, self._regexes, strict=True):
            if regex.search(text):
                return pattern
        return None

    def start_op(self, op_id: str) -> None:
        with self._lock:
            self._current, self._hit = op_id, False

    def feed(self, line: str) -> str | None:
        """Check one complete log line; returns the notice line to append (not to be fed back)."""
        with self._lock:
            if self._current is None:
                return None
            found = self.match(line)
            if found is None:
                return None
            if not self.fail_ignore:
                self._hit = True
        hint = "WARN:" if self.fail_ignore else "ERROR:"
        return f"{hint} Fail pattern {found} matched for pre line."

    def finish_op(self) -> bool:
        """End the current op; True when its output matched and it must not count as succeeded."""
        with self._lock:
            hit, self._current, self._hit = self._hit, None, False
        return hit

    @property
    def current_op(self) -> str | None:
        return self._current
