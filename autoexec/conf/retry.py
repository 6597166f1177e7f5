"""One way to try something again: bounded attempts, growing delays, and a cancel event that ends
the wait at once.

Every retry loop of autoexec (SSH handshakes and channel opens, console downloads and callbacks,
Prefect API calls, MongoDB writes) goes through :func:`retry`, so an abort never waits out a
backoff and delays are phrased the same way everywhere.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from autoexec.conf.errors import AutoexecError

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Delay before retry number ``n`` (0 for the first retry): ``first * factor**n``, at most
    ``cap``; with ``jitter``, a uniform pick from the upper half of that (spreads out clients that
    failed together)."""

    first: float = 0.1
    factor: float = 2.0
    cap: float = 30.0
    jitter: bool = False

    def delay(self, retry_no: int) -> float:
        delay = min(self.cap, self.first * self.factor ** min(retry_no, 64))
        return random.uniform(delay / 2, delay) if self.jitter else delay


class RetryCancelled(AutoexecError):
    """The cancel event was set before an attempt or during a wait; ``last`` is the failure that
    was going to be retried (``None`` when no attempt had failed yet)."""

    def __init__(self, last: BaseException | None) -> None:
        super().__init__(str(last) if last is not None else "cancelled")
        self.last = last


def retry(attempt: Callable[[], T], *, attempts: int | None, backoff: Backoff,
          cancel: threading.Event | None = None,
          retry_on: tuple[type[BaseException], ...] = (Exception,),
          should_retry: Callable[[BaseException], bool] | None = None,
          on_retry: Callable[[BaseException, int, float], None] | None = None,
          within: float | None = None) -> T:
    """``attempt()``'s result, trying again after a failure of a type in ``retry_on``.

    ``attempts``: how many tries in all (``None``: until success or cancel). ``should_retry``
    decides per failure (``False`` re-raises it at once). ``on_retry(exc, retry_no, delay)`` is told
    before each wait. ``within``: no retry would start later than this many seconds after the
    first try. The last failure is re-raised when tries run out; :class:`RetryCancelled` when
    ``cancel`` is set before a try or during a wait (which then ends at once).
    """
    started = time.monotonic()
    last: BaseException | None = None
    retry_no = 0
    while True:
        if cancel is not None and cancel.is_set():
            raise RetryCancelled(last)
        try:
            return attempt()
        except retry_on as exc:
            if should_retry is not None and not should_retry(exc):
                raise
            if attempts is not None and retry_no + 1 >= attempts:
                raise
            delay = backoff.delay(retry_no)
            if within is not None and time.monotonic() + delay - started > within:
                raise
            last = exc
        if on_retry is not None:
            on_retry(last, retry_no, delay)
        retry_no += 1
        if cancel is not None:
            if cancel.wait(delay):
                raise RetryCancelled(last)
        else:
            time.sleep(delay)
