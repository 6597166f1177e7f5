"""One job-scoped masker: every secret the runner knows for a job becomes ``******`` in what
autoexec writes or forwards (logs, Prefect run logs, MongoDB documents, error messages).

The secrets form one trie-shaped regular expression, so a line costs one C-level scan however
many there are. Secrets shorter than :data:`MIN_LENGTH` are not masked: asterisks everywhere
would give them away anyway."""
from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

MASK = "******"
MIN_LENGTH = 3

Mask = Callable[[str], str]


def _trie_pattern(words: Iterable[str]) -> str:
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = True

    def build(node: dict[str, Any]) -> str:
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:  # a secret ends here; a longer one goes on: greedy, so the longer wins
            return f"(?:{body})?"
        return body

    return build(trie)


class Masker:
    """Callable: ``masker(text) -> text`` with every known secret replaced by :data:`MASK`."""

    def __init__(self, secrets: Iterable[Any] = ()) -> None:
        self._known: frozenset[str] = frozenset()
        self._sub: Callable[[str, str], str] | None = None
        self._lock = threading.Lock()
        self._sources: dict[int, object] = {}
        self.add(secrets)

    def __repr__(self) -> str:  # never the secrets themselves
        return f"Masker({len(self._known)} secrets)"

    def __len__(self) -> int:
        return len(self._known)

    @staticmethod
    def _pieces(values: Iterable[Any]) -> set[str]:
        out: set[str] = set()
        for value in values:
            if not isinstance(value, str) or not value:
                continue
            for piece in value.splitlines() if ("\n" in value or "\r" in value) else (value,):
                piece = piece.strip() if piece != value else piece
                if len(piece) >= MIN_LENGTH and piece != MASK:
                    out.add(piece)
        return out

    def add(self, secrets: Iterable[Any]) -> bool:
        """Learn more secrets (non-strings and short ones are ignored); ``True`` if any was new."""
        new = self._pieces(secrets) - self._known
        if not new:
            return False
        with self._lock:
            known = self._known | new
            pattern = re.compile(_trie_pattern(known))
            self._known = known
            self._sub = pattern.sub  # rebound atomically: writers never see a half-built state
        return True

    def add_from(self, source: object, secrets: Callable[[], Iterable[Any]]) -> None:
        """:meth:`add` the secrets of ``source`` (a parsed nodes file) once: every phase of a group
        plans from the same parsed file, and 1000 node passwords need not be re-read per phase."""
        key = id(source)
        if self._sources.get(key) is source:
            return
        self.add(secrets())
        self._sources[key] = source

    def __call__(self, text: str) -> str:
        sub = self._sub
        if sub is None or not text:
            return text
        return sub(MASK, text)

    @property
    def active(self) -> bool:
        return self._sub is not None

    def value(self, data: Any) -> Any:
        """A copy of a JSON-like value with every string (keys too) masked: MongoDB documents,
        status data, records."""
        if self._sub is None:
            return data
        if isinstance(data, str):
            return self(data)
        if isinstance(data, dict):
            return {self(k) if isinstance(k, str) else k: self.value(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.value(v) for v in data]
        return data

