"""Op types as the console and tool descriptors spell them, and what each means for running.

One table for three questions that used to have a table each: where an op runs (:class:`ExecKind`:
on the runner, on the target, on the runner against the target, inside the runner), which plugin
tree holds its tool (:class:`PluginTree`), and the console's own name for it (``--register``).
The older spellings ``local``, ``remote`` and ``localremote`` are accepted wherever a type is read.
"""
from __future__ import annotations

from enum import StrEnum


class ExecKind(StrEnum):
    """Where an op runs."""

    LOCAL = "local"
    """A child process of the runner."""
    REMOTE = "remote"
    """On the target node (SSH, Tagent)."""
    LOCALREMOTE = "localremote"
    """A child process of the runner, working against the target node."""
    NATIVE = "native"
    """A built-in op of the runner (some in process, some as a child)."""

    @property
    def where(self) -> str:
        """How a node log line says where the op ran."""
        return _WHERE.get(self, "")


class PluginTree(StrEnum):
    """``plugins/<tree>/<bundle>/<tool>``: runner-side tools, and tools copied to the target."""

    LOCAL = "local"
    REMOTE = "remote"


class OpType(StrEnum):
    RUNNER = "runner"
    TARGET = "target"
    RUNNER_TARGET = "runner_target"
    NATIVE = "native"
    SQLFILE = "sqlfile"
    LOCAL = "local"
    """Older name of ``runner``."""
    REMOTE = "remote"
    """Older name of ``target``."""
    LOCALREMOTE = "localremote"
    """Older name of ``runner_target``."""

    @property
    def kind(self) -> ExecKind:
        return _KIND[self]

    @property
    def tree(self) -> PluginTree:
        """The plugin tree of its tool: everything but ``target`` runs a runner-side tool."""
        return PluginTree.REMOTE if self.kind is ExecKind.REMOTE else PluginTree.LOCAL

    @property
    def canonical(self) -> OpType:
        """The console's name (``local`` -> ``runner``, ...)."""
        return _CANONICAL.get(self, self)

    @property
    def runs_on_runner(self) -> bool:
        """A phase of this type runs once, on the runner (``runner``/``local``/``sqlfile``)."""
        return self in (OpType.RUNNER, OpType.LOCAL, OpType.SQLFILE)

    @classmethod
    def canonical_names(cls) -> tuple[str, ...]:
        return tuple(t.value for t in cls if t.canonical is t)

    @classmethod
    def for_tree(cls, tree: str, declared: object) -> str:
        """The type ``--register`` sends for a descriptor in ``tree`` that declares ``declared``:
        a tool of the remote tree is a ``target`` tool whatever it says, a missing type is
        ``runner``, older names become the console's; anything else is left for validation."""
        if tree == PluginTree.REMOTE:
            return cls.TARGET.value
        if declared in (None, ""):
            return cls.RUNNER.value
        try:
            return cls(str(declared)).canonical.value
        except ValueError:
            return str(declared)


_KIND = {OpType.RUNNER: ExecKind.LOCAL, OpType.LOCAL: ExecKind.LOCAL, OpType.SQLFILE: ExecKind.LOCAL,
         OpType.TARGET: ExecKind.REMOTE, OpType.REMOTE: ExecKind.REMOTE,
         OpType.RUNNER_TARGET: ExecKind.LOCALREMOTE, OpType.LOCALREMOTE: ExecKind.LOCALREMOTE,
         OpType.NATIVE: ExecKind.NATIVE}
_CANONICAL = {OpType.LOCAL: OpType.RUNNER, OpType.REMOTE: OpType.TARGET, OpType.LOCALREMOTE: OpType.RUNNER_TARGET}
_WHERE = {ExecKind.LOCAL: "on runner", ExecKind.REMOTE: "on remote OS", ExecKind.LOCALREMOTE: "on runner to target"}
