"""Yes/no values as people and consoles write them: ``1``/``true``/``yes``/``on``/``y`` and
``0``/``false``/``no``/``off``/``n``, in any case, with surrounding blanks. One spelling list for
config files, descriptors, option values and native-op arguments."""
from __future__ import annotations

from typing import Any

TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "n"})


def parse_flag(value: Any) -> bool | None:
    """``True``/``False`` for a recognised yes/no (bools and numbers too), ``None`` otherwise
    (empty included), so each caller decides what an unrecognised value means."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    return None


def is_true(value: Any) -> bool:
    """Only a recognised yes is true (missing, empty and unknown values are not)."""
    return parse_flag(value) is True
