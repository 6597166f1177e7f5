"""The shared ``wait_until`` helper: returns what the predicate found, fails naming what it awaited."""
from __future__ import annotations

import itertools

import pytest

from tests.waiting import wait_until


def test_returns_the_first_truthy_value() -> None:
    answers = iter([None, 0, [], ["found"]])
    assert wait_until(lambda: next(answers), 5, interval=0) == ["found"]


def test_a_zero_timeout_still_asks_once() -> None:
    assert wait_until(lambda: "now", 0) == "now"


def test_fails_naming_what_was_awaited_and_asks_a_callable_only_then() -> None:
    asked = []

    def what() -> str:
        asked.append(1)
        return "the console to answer"

    calls = itertools.count()
    with pytest.raises(AssertionError, match="waiting for the console to answer"):
        wait_until(lambda: next(calls) < 0, 0.05, what, interval=0.01)
    assert asked == [1]
    assert next(calls) >= 2  # polled, and once more at the deadline


def test_a_chance_not_required_returns_the_last_value() -> None:
    assert wait_until(lambda: 0, 0.01, interval=0.005, required=False) == 0
