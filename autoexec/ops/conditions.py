"""IF-Block conditions (§10.13): a thin adapter over the DSL evaluator."""
from __future__ import annotations

from typing import Callable


def evaluate_condition(expr: str, lookup: Callable[[str], str | None]) -> bool:
    from autoexec.ops.condition import ConditionError, evaluate

    try:
        return evaluate(expr, lookup)
    except ConditionError as exc:
        raise ValueError(str(exc)) from None
