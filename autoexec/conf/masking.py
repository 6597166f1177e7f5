"""One job-scoped masker: every secret the runner knows for a job becomes ``******`` in what
autoexec writes or forwards (logs, Prefect run logs, MongoDB documents, error messages).

The secrets form trie-shaped regular expressions, so a line costs one C-level scan per level
however many secrets there are. Secrets arriving one at a time (a credential per node) are kept in
levels merged like a binary counter: n additions compile O(n log n) secrets, not O(n^2). Secrets
shorter than :data:`MIN_LENGTH` are not masked: asterisks everywhere would give them away anyway."""
from __future__ import annotations

import functools
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


def _sub_levels(patterns: tuple[re.Pattern[str], ...], mask: str, text: str) -> str:
    """What one pattern of all the levels' secrets would do: at the leftmost position where any
    secret starts, the longest one there is masked, and the scan goes on after it."""
    found: list[re.Match[str] | None] = [p.search(text) for p in patterns]
    if not any(found):
        return text
    out: list[str] = []
    pos = 0
    while True:
        best: re.Match[str] | None = None
        for i, match in enumerate(found):
            if match is not None and match.start() < pos:  # overlapped by the last mask: look again
                match = found[i] = patterns[i].search(text, pos)
            if match is not None and (best is None or match.start() < best.start()
                                      or (match.start() == best.start() and match.end() > best.end())):
                best = match
        if best is None:
            break
        out += (text[pos:best.start()], mask)
        pos = best.end()
    out.append(text[pos:])
    return "".join(out)


class Masker:
    """Callable: ``masker(text) -> text`` with every known secret replaced by :data:`MASK`."""

    def __init__(self, secrets: Iterable[Any] = ()) -> None:
        self._known: frozenset[str] = frozenset()
        self._levels: tuple[tuple[frozenset[str], re.Pattern[str]], ...] = ()
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
            new -= self._known  # another thread may have added some meanwhile
            if not new:
                return False
            batch = set(new)
            levels = list(self._levels)
            while levels and len(levels[-1][0]) <= len(batch):
                batch |= levels.pop()[0]
            levels.append((frozenset(batch), re.compile(_trie_pattern(batch))))
            self._levels = tuple(levels)
            self._known = self._known | new
            patterns = tuple(pattern for _, pattern in levels)
            # rebound atomically: writers never see a half-built state
            self._sub = patterns[0].sub if len(patterns) == 1 else functools.partial(_sub_levels, patterns)
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

