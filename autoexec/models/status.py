"""Statuses of nodes, ops, phases, groups and jobs, with the rules every layer applies to them.

The values are exactly the strings the original writes to status files and sends to the console
(``waitInput`` included), so a member can be written, compared and JSON-encoded as the plain
string. The rules live here once: which statuses are failures, which are final, that a failure
while the job is aborting counts as aborted (the abort is what killed it), and which of several
outcomes wins when one status must stand for them all.
"""
from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAIT_INPUT = "waitInput"
    SUCCEED = "succeed"
    COMPLETED = "completed"
    """A phase whose failed nodes were all ignored."""
    IGNORED = "ignored"
    """Failed, with ``failIgnore``: the node goes on and counts as done."""
    FAILED = "failed"
    ABORTED = "aborted"
    PAUSED = "paused"
    SKIPPED = "skipped"
    """Done in an earlier run of the job and not run again (progress views and records only)."""
    CRASHED = "crashed"
    """The job process died before it reported its end (records only)."""

    @classmethod
    def of(cls, value: object, default: Status | None = None) -> Status:
        """The member for a recorded value; ``default`` (else ``pending``) for an unknown one."""
        member = _BY_VALUE.get(value if isinstance(value, str) else str(value))  # no enum call per lookup
        if member is not None:
            return member
        return default if default is not None else cls.PENDING

    @property
    def failed(self) -> bool:
        """Counts as a failure of the job: exit code 1, listed among failed nodes."""
        return self in _FAILED

    @property
    def final(self) -> bool:
        """The run of this node, phase, group or job is over (what a re-run starts from)."""
        return self in _FINAL

    @property
    def done(self) -> bool:
        """A node in this status is not run again unless forced."""
        return self in (Status.SUCCEED, Status.IGNORED)

    def while_aborting(self, aborting: bool) -> Status:
        """A failure (ignored or not) while the job is aborting counts as aborted."""
        return Status.ABORTED if aborting and self in (Status.FAILED, Status.IGNORED) else self

    @property
    def hint(self) -> str:
        """The level word a node log line about reaching this status starts with."""
        return _HINT.get(self, "INFO:")

    @classmethod
    def worst(cls, statuses: Iterable[str], default: Status | None = None) -> Status:
        """One status for several outcomes: aborted over failed over paused; ``default`` (else
        ``succeed``) when none of them occurred."""
        seen = set(statuses)
        for status in _WORST_FIRST:
            if status in seen:
                return status
        return default if default is not None else cls.SUCCEED


_BY_VALUE: dict[str, Status] = {m.value: m for m in Status}
_FAILED = frozenset({Status.FAILED, Status.ABORTED})
_FINAL = frozenset({Status.SUCCEED, Status.COMPLETED, Status.IGNORED, Status.FAILED, Status.ABORTED,
                    Status.PAUSED, Status.SKIPPED, Status.CRASHED})
_WORST_FIRST = (Status.ABORTED, Status.FAILED, Status.PAUSED)
_HINT = {Status.SUCCEED: "FINE:", Status.IGNORED: "WARN:", Status.PAUSED: "WARN:",
         Status.FAILED: "ERROR:", Status.ABORTED: "ERROR:"}
