"""One rule for turning a tool's output bytes into log text, whatever carried them.

Local children, SSH channels and Tagent agents all hand their lines to :func:`decode_line`, so a
tool printing GBK shows the same text in the node log wherever it ran. The rule: UTF-8 when the
line is valid UTF-8; else the host's declared charset (a Tagent agent announces one); else GB18030
(a superset of GBK, what tools on Chinese-locale hosts print); else UTF-8 with replacement
characters, so no byte sequence ever fails a node.
"""
from __future__ import annotations

import codecs

_UTF8 = {"utf-8", "utf_8", "utf8"}


def _normal(charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        return None
    return None if name in _UTF8 else name


def decode_line(raw: bytes, charset: str | None = None) -> str:
    """``raw`` as text by the rule above (``charset``: the host's declared one, if any)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    declared = _normal(charset)
    for codec in ((declared,) if declared else ()) + ("gb18030",):
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            continue
    return raw.decode("utf-8", "replace")
