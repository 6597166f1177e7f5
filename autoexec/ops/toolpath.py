"""Where a tool is: the one lookup of ``<bundle>/<tool>`` in the plugin dirs and the one rule for
which op names may be looked up. Running, the dry run and the catalogue (``--register``) all ask
here, so they cannot disagree on which files a name means. Filesystem only: no descriptor is read.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoexec.conf.errors import AutoexecError
from autoexec.models.optype import OpType, PluginTree


class ToolNotFound(AutoexecError, LookupError):
    """One line naming the op and the paths looked at."""


def tool_parts(op_name: str) -> tuple[str, ...]:
    """The path parts of an op name: ``<bundle>/<tool>`` (a bare ``<tool>`` or a deeper bundle as
    the original's ``plugins/<tree>/<dirname>/<basename>`` allows). A name that could point outside
    its tree, or at a file other than the one it spells, is refused rather than repaired: empty,
    absolute, a backslash, a control character, an empty, ``.`` or ``..`` part."""
    if not op_name:
        problem = "it is empty"
    elif op_name.startswith("/"):
        problem = "it is an absolute path"
    elif "\\" in op_name:
        problem = "it contains a backslash"
    elif any(ch < " " or ch == "\x7f" for ch in op_name):
        problem = "it contains a control character"
    else:
        parts = tuple(op_name.split("/"))
        bad = next((p for p in parts if p in ("", ".", "..")), None)
        if bad is None:
            return parts
        problem = "it has an empty part" if bad == "" else f"it has a {bad!r} part"
    raise ToolNotFound(f"invalid tool name {op_name!r}: {problem}")


def tree_of(kind: str) -> PluginTree:
    """``local``/``remote``, or the tree of an ``opType`` (``runner`` -> local, ``target`` -> remote)."""
    try:
        return PluginTree(kind)
    except ValueError:
        pass
    try:
        return OpType(kind).tree
    except ValueError:
        raise ToolNotFound(f"unknown tool kind {kind!r}") from None


@dataclass(frozen=True)
class FoundTool:
    """A tool's files, all from the one plugin dir that provides it."""

    op_name: str
    tree: PluginTree
    plugin_dir: Path
    descriptor: Path | None
    """``<tool>.json``; ``None`` for an executable without one (common in estates' own trees)."""
    executable: Path | None
    """``None`` for a JSON-only tool (the native ops run inside the runner)."""
    searched: tuple[Path, ...]
    """``<dir>/<tree>/<bundle>/<tool>`` of each plugin dir looked in, up to this one."""

    def runnable(self) -> Path:
        """The executable, or :class:`ToolNotFound` when this dir holds only the descriptor."""
        if self.executable is None:
            raise ToolNotFound(f"Plugin not exists {self.op_name} (only its descriptor {self.descriptor}, which "
                               f"hides later plugin dirs; looked in {', '.join(map(str, self.searched))})")
        return self.executable


def find_tool(op_name: str, kind: str, plugin_dirs: Sequence[Path]) -> FoundTool:
    """``<bundle>/<tool>`` of tree ``kind`` (``local``/``remote`` or an ``opType``) in the first
    plugin dir that has its executable or its ``.json`` descriptor (``plugins.path`` trees, then
    ``$AUTOEXEC_HOME/plugins``, then the bundled tools).

    That dir provides the whole tool; nothing is combined across dirs. So a descriptor alone in an
    earlier dir hides an executable in a later one (running it then fails, naming the descriptor),
    and an executable alone hides a later descriptor: the descriptor the console builds an op's
    arguments from always describes the executable that runs, never a different copy of the tool.
    An executable without a descriptor runs, as the original runs ``plugins/local/<bundle>/<tool>``
    by path.
    """
    tree = tree_of(kind)
    parts = tool_parts(op_name)
    searched: list[Path] = []
    for base in plugin_dirs:
        tool = Path(base, tree, *parts)
        searched.append(tool)
        descriptor = tool.with_name(tool.name + ".json")
        executable = tool if tool.is_file() else None
        has_descriptor = descriptor.is_file()
        if executable is not None or has_descriptor:
            return FoundTool(op_name, tree, Path(base), descriptor if has_descriptor else None, executable,
                             tuple(searched))
    raise ToolNotFound(f"Plugin not exists {op_name} (no executable or .json descriptor in "
                       f"{', '.join(map(str, searched)) or 'no plugin dir'})")
