"""Which charsets a tool's output may be in besides UTF-8 (setting ``output.charsets``): the names and
their parsing, here below the config that reads them; transports/decoding.py applies them."""
from __future__ import annotations

import codecs

DEFAULT_CHARSETS: tuple[str, ...] = ("gb18030",)
"""Fallback charsets when ``output.charsets`` is not set."""

UTF8_NAMES = {"utf-8", "utf_8", "utf8"}


def parse_charsets(text: str) -> tuple[str, ...]:
    """``"GBK, Big5"`` -> codec names; raises ``LookupError`` naming an unknown one. UTF-8 in the
    list is accepted and dropped (it is always tried first)."""
    names: list[str] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            name = codecs.lookup(item).name
        except LookupError:
            raise LookupError(f"unknown charset {item!r}") from None
        if name not in UTF8_NAMES and name not in names:
            names.append(name)
    return tuple(names) or DEFAULT_CHARSETS
