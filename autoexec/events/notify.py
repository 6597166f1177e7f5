"""What the runner tells the outside world at every state change.

The engine only ever talks to a :class:`Notifier`; devmode uses :class:`NullNotifier`
(the original sends nothing in devmode either), production uses the console notifier of
:mod:`autoexec.console`, which queues every call in a durable outbox first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class NodeRef:
    resource_id: int
    host: str
    port: int | str


@dataclass(frozen=True)
class PhaseCounts:
    suc: int = 0
    fail: int = 0
    skip: int = 0
    ignore: int = 0
    pause: int = 0
    warn: int = 0


class Notifier(Protocol):
    def node_status(self, *, group_no: int, phase: str, node: NodeRef, status: str,
                    fail_ignore: bool, warn_count: int) -> None: ...

    def phase_status(self, *, group_no: int, phase: str, status: str, counts: PhaseCounts) -> None: ...

    def round_ended(self, *, group_no: int, phase: str, round_no: int) -> None: ...

    def fire_next_group(self, *, group_no: int) -> None: ...

    def job_status(self, *, status: str) -> None:
        """``paused`` or ``aborted`` (the console derives success/failure itself)."""
        ...

    def export_env(self, *, name: str, value: str, hidden: bool) -> None: ...

    def update_global_param(self, *, key: str, value: str) -> None: ...

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued was delivered; ``False`` if some is still pending."""
        ...

    def close(self) -> None: ...


@dataclass
class NullNotifier:
    """devmode: nothing leaves the machine. Records calls so tests and the console log can see them."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def _rec(self, call: str, /, **kw: object) -> None:  # positional: export_env has a ``name`` keyword
        self.calls.append((call, kw))

    def node_status(self, **kw: object) -> None:
        self._rec("node_status", **kw)

    def phase_status(self, **kw: object) -> None:
        self._rec("phase_status", **kw)

    def round_ended(self, **kw: object) -> None:
        self._rec("round_ended", **kw)

    def fire_next_group(self, **kw: object) -> None:
        self._rec("fire_next_group", **kw)

    def job_status(self, **kw: object) -> None:
        self._rec("job_status", **kw)

    def export_env(self, **kw: object) -> None:
        self._rec("export_env", **kw)

    def update_global_param(self, **kw: object) -> None:
        self._rec("update_global_param", **kw)

    def flush(self, timeout: float) -> bool:
        return True

    def close(self) -> None:
        pass
