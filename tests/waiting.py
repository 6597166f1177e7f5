"""The one way tests wait for something another thread or process does: poll, never sleep a fixed
time, and fail with what was awaited. Timeouts are generous limits for a loaded 2-core machine,
not speed assertions (unless a test says it measures a limit of the code under test)."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 60.0, what: str | Callable[[], str] = "",
               interval: float = 0.05, required: bool = True) -> T:
    """Calls ``predicate`` until it returns something truthy and returns that. Once ``timeout``
    seconds have passed without it, the test fails naming ``what`` (a callable is asked only
    then, e.g. for a process's stderr) — or, with ``required=False`` (a chance given, e.g. to
    pick a moment, whose outcome later assertions judge), the last value is returned.
    ``predicate`` is always called at least once, and once more after the deadline has passed,
    so a slow poll never loses the last chance."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            if not required:
                return value
            described = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s waiting for {described or predicate}")
        time.sleep(interval)
