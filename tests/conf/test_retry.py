"""The one retry helper: attempts, delays, which failures, and a cancel that ends a wait at once."""
from __future__ import annotations

import threading
import time

import pytest

from autoexec.conf.retry import Backoff, RetryCancelled, retry

FAST = Backoff(first=0.001, cap=0.004)


class Flaky:
    def __init__(self, failures: int, exc: type[Exception] = OSError) -> None:
        self.failures, self.exc, self.calls = failures, exc, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc(f"failure {self.calls}")
        return "done"


def test_succeeds_after_failures_and_tells_each_retry() -> None:
    told: list[tuple[str, int, float]] = []
    fn = Flaky(2)
    assert retry(fn, attempts=3, backoff=FAST, on_retry=lambda e, n, d: told.append((str(e), n, d))) == "done"
    assert fn.calls == 3
    assert told == [("failure 1", 0, 0.001), ("failure 2", 1, 0.002)]


def test_the_last_failure_is_raised_when_attempts_run_out() -> None:
    fn = Flaky(5)
    with pytest.raises(OSError, match="failure 3"):
        retry(fn, attempts=3, backoff=FAST)
    assert fn.calls == 3


def test_other_failures_and_refused_ones_are_not_retried() -> None:
    fn = Flaky(1, ValueError)
    with pytest.raises(ValueError):
        retry(fn, attempts=5, backoff=FAST, retry_on=(OSError,))
    assert fn.calls == 1
    fn = Flaky(3)
    with pytest.raises(OSError, match="failure 2"):
        retry(fn, attempts=None, backoff=FAST, should_retry=lambda e: "1" in str(e))
    assert fn.calls == 2


def test_delays_grow_to_the_cap_and_jitter_stays_in_the_upper_half() -> None:
    b = Backoff(first=0.5, factor=2, cap=3)
    assert [b.delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 3, 3]
    jittered = Backoff(first=1, cap=8, jitter=True)
    assert all(2 <= jittered.delay(2) <= 4 for _ in range(50))


def test_within_bounds_the_time_spent_retrying() -> None:
    fn = Flaky(1000)
    with pytest.raises(OSError):
        retry(fn, attempts=None, backoff=Backoff(first=0.05, factor=1, cap=0.05), within=0.2)
    assert 2 <= fn.calls <= 6


def test_a_cancel_during_a_long_wait_returns_at_once() -> None:
    cancel = threading.Event()
    fn = Flaky(1)
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(RetryCancelled) as info:
        retry(fn, attempts=None, backoff=Backoff(first=600), cancel=cancel)
    assert time.monotonic() - started < 300  # far below the 600 s wait: the event ended it
    assert fn.calls == 1 and str(info.value.last) == "failure 1"


def test_a_cancel_set_before_the_first_attempt_runs_nothing() -> None:
    cancel = threading.Event()
    cancel.set()
    fn = Flaky(0)
    with pytest.raises(RetryCancelled) as info:
        retry(fn, attempts=3, backoff=FAST, cancel=cancel)
    assert fn.calls == 0 and info.value.last is None
