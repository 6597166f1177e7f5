"""The job's variables (what every tool of the job sees in its environment) and the one way to set them.

Every writer (``native/setenv``, a tool's ``setEnv`` on the job socket, the socket's own path, the
reload of stored variables) goes through :meth:`JobEnv.set`; its scope decides, in one place, what
a write does besides changing the value (see ``SCOPES``). Hidden values join the job's masker.
Tool environments derived from the variables are cached and rebuilt after any write.

Writes are rare and reads happen on every op, so a write publishes a new dict and never changes a
published one: a reader takes the current one as it is (:meth:`view`), without a copy or the lock.
"""
from __future__ import annotations

import threading
from types import MappingProxyType
from typing import Any, Callable, Iterator, Literal, Mapping, Protocol, TypeVar, cast

from autoexec.conf.masking import Masker
from autoexec.events.notify import Notifier

Scope = Literal["process", "job", "global"]
# process: this runner process only (the socket's path, a tool's onlyInProcess, values reloaded
#   from the job's store, which are stored already);
# job: also saved in the job's store (MongoDB), so later phases, later runs and the job's other
#   runners read it at their next group start (a tool's setEnv);
# global: saved as job and exported to the console (export_env), as native/setenv scope global does.
SCOPES: tuple[Scope, ...] = ("process", "job", "global")
HIDDEN = "******"

T = TypeVar("T")


class EnvStore(Protocol):
    """Where job variables outlive the process (the MongoDB mirror)."""

    def save_env(self, job_id: str, name: str, value: str, hidden: bool = False) -> None: ...


class JobEnv:
    def __init__(self, values: dict[str, str], *, job_id: str, notifier: Notifier, masker: Masker,
                 store: Any = None) -> None:
        self._values: dict[str, str] = dict(values)
        """Never changed once set here: :meth:`set` replaces it (copy on write)."""
        self._hidden: set[str] = set()
        self._lock = threading.Lock()
        self._version = 0
        self._derived: dict[Any, tuple[int, Any]] = {}
        self.job_id = job_id
        self.notifier = notifier
        self.masker = masker
        self.store: EnvStore | None = store if hasattr(store, "save_env") else None

    # --- the one write path ------------------------------------------------------------------
    def set(self, name: str, value: Any, hidden: bool = False, scope: Scope = "job") -> None:
        if scope not in SCOPES:
            raise ValueError(f"job variable {name}: unknown scope {scope!r} (expected one of {', '.join(SCOPES)})")
        name, text = str(name), str(value)
        if hidden:
            self.masker.add([text])  # before anything could log it
        with self._lock:
            values = dict(self._values)
            values[name] = text
            self._values = values
            if hidden:
                self._hidden.add(name)
            else:
                self._hidden.discard(name)
            self._version += 1
        if scope == "process":
            return
        if self.store is not None:
            self.store.save_env(self.job_id, name, text, hidden)
        if scope == "global":
            self.notifier.export_env(name=name, value=text, hidden=hidden)

    def reload(self, stored: dict[str, Any] | None) -> None:
        """Variables read back from the job's store (set by earlier phases, runs or other runners)."""
        for name, value in (stored or {}).items():
            self.set(name, value, scope="process")

    # --- reading -------------------------------------------------------------------------------
    def get(self, name: str, default: str | None = None) -> str | None:
        return self._values.get(name, default)

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self.snapshot())

    def snapshot(self) -> dict[str, str]:
        """A copy for a child process's environment (hidden values included: the tool needs them)."""
        return dict(self._values)

    def view(self) -> Mapping[str, str]:
        """The variables as they are now, read-only and unaffected by later writes (no copy)."""
        return MappingProxyType(self._values)

    def shown(self, name: str) -> str | None:
        """The value as it may appear in a log line: ``******`` when it was set hidden."""
        with self._lock:
            if name in self._hidden:
                return HIDDEN
            return self._values.get(name)

    @property
    def version(self) -> int:
        """Counts writes: anything derived from an older version is stale."""
        return self._version

    def derived(self, key: Any, build: Callable[[dict[str, str]], T]) -> T:
        """``build(variables)`` cached under ``key`` until the next write (tool environments)."""
        with self._lock:
            version = self._version
            cached = self._derived.get(key)
        if cached is not None and cached[0] == version:
            return cast(T, cached[1])  # stored by build() under this key
        with self._lock:
            version, values = self._version, self._values
        value = build(dict(values))
        with self._lock:
            self._derived[key] = (version, value)
        return value
