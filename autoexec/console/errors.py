"""Typed console failures.

Callers (engine, outbox, register) decide by type whether to retry, dead-letter or stop, so the
classification lives in one place. Messages carry the console's own ``Message`` text and the API
path, never credentials or request bodies.
"""
from __future__ import annotations

from autoexec.conf.errors import AutoexecError

AUTH_CODES = frozenset({521, 522, 527})


class ConsoleError(AutoexecError):
    """Base of every console failure."""

    def __init__(self, message: str, *, api: str = "", status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.api = api
        self.status_code = status_code

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later without changing it."""
        return False


class ConsoleUnavailable(ConsoleError):
    """Connection refused/reset, DNS failure or timeout: the console may come back."""

    @property
    def retryable(self) -> bool:
        return True


class ConsoleTLSError(ConsoleError):
    """The console's certificate was not accepted: retrying the same request cannot help."""


class ConsoleHTTPError(ConsoleError):
    """A non-2xx answer. 5xx, 408 and 429 are worth retrying; other 4xx are not."""

    @property
    def retryable(self) -> bool:
        code = self.status_code or 0
        return code >= 500 or code in (408, 429)


class ConsoleAuthError(ConsoleHTTPError):
    """521 tenant missing/disabled, 522 authentication failed, 527 session expired."""


class ConsoleStatusError(ConsoleError):
    """HTTP 2xx but ``Status != OK``: the console processed the call and refused it."""


class ConsoleDownloadError(ConsoleError):
    """A download answered with something that cannot be stored (bad headers, unusable body)."""
