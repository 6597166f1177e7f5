"""One rule for cutting a tool's output bytes into log lines, whatever carried them.

Local children, SSH channels and Tagent agents all feed their bytes to a :class:`LineSplitter`, so
a tool printing GBK shows the same text in the node log wherever it ran. Cutting: at ``\\n``; the
``\\r`` of a CRLF (any trailing ``\\r``) is dropped; an unfinished last line is delivered when the
stream ends (:meth:`LineSplitter.flush`), or once it grows past ``max_line`` bytes. Decoding, per
line: UTF-8 when the line is valid UTF-8; else the host's declared charset (a Tagent agent
announces one); else each fallback charset in order (setting ``output.charsets``, default
GB18030: a superset of GBK, what tools on Chinese-locale hosts print); else UTF-8 with
replacement characters, so no byte sequence ever fails a node.
"""
from __future__ import annotations

import codecs
from typing import Iterable

from autoexec.conf.charsets import DEFAULT_CHARSETS, UTF8_NAMES, parse_charsets

__all__ = ["DEFAULT_CHARSETS", "LineSplitter", "decode_line", "parse_charsets"]


def _normal(charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        return None
    return None if name in UTF8_NAMES else name


def decode_line(raw: bytes, charset: str | None = None, fallbacks: Iterable[str] = DEFAULT_CHARSETS) -> str:
    """``raw`` as text by the rule above (``charset``: the host's declared one, if any)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    declared = _normal(charset)
    for codec in ((declared,) if declared else ()) + tuple(fallbacks):
        try:
            return raw.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    return raw.decode("utf-8", "replace")


class LineSplitter:
    """One output stream cut into decoded lines by the rule above. :meth:`feed` returns the lines
    a chunk completed (a line split across chunks, even inside a multi-byte character, is held
    until its newline); :meth:`flush` the unfinished rest at the end of the stream."""

    def __init__(self, fallbacks: Iterable[str] = DEFAULT_CHARSETS, charset: str | None = None,
                 max_line: int | None = None) -> None:
        self.fallbacks = tuple(fallbacks)
        self.charset = charset
        """The host's declared charset; may be set once the host announced it."""
        self.max_line = max_line
        self._pending = bytearray()

    def decode(self, raw: bytes) -> str:
        return decode_line(raw.rstrip(b"\r"), self.charset, self.fallbacks)

    def feed(self, data: bytes) -> list[str]:
        block = self._complete(data)
        lines = self._decode_block(block) if block is not None else []
        return lines + self.flush() if self._too_long() else lines

    def flush(self) -> list[str]:
        raw = self.flush_raw()
        return [self.decode(raw)] if raw is not None else []

    def feed_raw(self, data: bytes) -> list[bytes]:
        """Like :meth:`feed`, the lines left undecoded (for a reader that finds protocol records
        among them and decodes the rest with :meth:`decode`)."""
        block = self._complete(data)
        lines = [raw.rstrip(b"\r") for raw in block.split(b"\n")] if block is not None else []
        rest = self.flush_raw() if self._too_long() else None
        return lines + [rest] if rest is not None else lines

    def flush_raw(self) -> bytes | None:
        if not self._pending:
            return None
        raw = bytes(self._pending).rstrip(b"\r")
        self._pending.clear()
        return raw

    def _too_long(self) -> bool:
        return self.max_line is not None and len(self._pending) > self.max_line

    def _complete(self, data: bytes) -> bytes | None:
        """The complete lines ``data`` finished (joined, without the last newline), or ``None``."""
        cut = data.rfind(b"\n")
        if cut < 0:
            self._pending += data
            return None
        if self._pending:
            self._pending += data[:cut]
            block = bytes(self._pending)
            self._pending.clear()
        else:
            block = data[:cut]
        if cut + 1 < len(data):
            self._pending += data[cut + 1:]
        return block

    def _decode_block(self, block: bytes) -> list[str]:
        """Complete lines, decoded at once when the whole block is UTF-8 (the same per line)."""
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            return [self.decode(raw) for raw in block.split(b"\n")]
        return [line.rstrip("\r") for line in text.split("\n")]
