"""The tool catalogue: tool descriptors (``plugins/<local|remote>/<bundle>/<tool>.json`` next to
the tool), validated by one model, and the tools a set of plugin dirs provides.

The console owns the format and existing tools are loose with it (``required`` as ``"true"`` or a
bool, ``validate: null``, ``option: null``, ad-hoc extra keys), so parsing is lenient on shape,
strict on what the runner relies on (``opType``, option/output names), and keeps unknown keys so a
descriptor can be sent back to the console (``--register``) without losing anything. Running,
``--register`` and the tests read descriptors through this module only.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from autoexec.conf.errors import AutoexecError
from autoexec.models.flags import parse_flag
from autoexec.models.optype import OpType, PluginTree
from autoexec.models.params import field_path
from autoexec.ops.toolpath import ToolNotFound, find_tool

TREES = (PluginTree.LOCAL, PluginTree.REMOTE)


class DescriptorError(AutoexecError, ValueError):
    """One line: ``<file>: <field>: <problem>``."""


def _flag(value: Any) -> bool:
    """``"true"``/``"false"``, bools and 0/1 as the console and hand-written descriptors use them."""
    if value is None or value == "":
        return False
    flag = parse_flag(value)
    if flag is None:
        raise ValueError(f"expected true/false, got {value!r}")
    return flag


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class OptionDesc(_Loose):
    opt: str = Field(min_length=1, description="Option name, rendered as --<opt> (or -<opt> if 1 char).")
    name: str = ""
    help: str | None = ""
    type: str = Field(default="text", min_length=1)
    required: bool = False
    validate_rule: Any = Field(default=None, alias="validate")
    defaultValue: Any = None
    dataSource: dict[str, Any] | None = None

    @field_validator("required", mode="before")
    @classmethod
    def _required(cls, value: Any) -> bool:
        return _flag(value)


class ArgumentDesc(_Loose):
    name: str = ""
    help: str | None = ""
    type: str = "text"
    count: int | None = 0
    isConst: bool = False
    defaultValue: Any = None
    required: bool = False
    validate_rule: Any = Field(default=None, alias="validate")

    @field_validator("required", "isConst", mode="before")
    @classmethod
    def _flags(cls, value: Any) -> bool:
        return _flag(value)


class OutputDesc(_Loose):
    opt: str = Field(min_length=1, description="Output name: a key of the tool's output JSON.")
    name: str = ""
    help: str | None = ""
    type: str = Field(default="text", min_length=1)
    defaultValue: Any = None


class ToolDescriptor(_Loose):
    opDesc: str = ""
    opType: OpType
    typeName: str = ""
    riskName: str = ""
    interpreter: str | None = None
    defaultProfile: Any = None
    description: str | None = ""
    enabled: bool = True
    option: list[OptionDesc] = Field(default_factory=list)
    argument: ArgumentDesc | None = None
    output: list[OutputDesc] = Field(default_factory=list)

    @field_validator("opType", mode="before")
    @classmethod
    def _known_op_type(cls, value: Any) -> OpType:
        """Older names (``local``, ``remote``, ``localremote``) become the console's."""
        try:
            return OpType(value).canonical
        except ValueError:
            raise ValueError(f"must be one of {', '.join(OpType.canonical_names())}, got {value!r}") from None

    @field_validator("enabled", mode="before")
    @classmethod
    def _enabled(cls, value: Any) -> bool:
        return True if value is None else _flag(value)

    @field_validator("option", "output", mode="before")
    @classmethod
    def _null_list(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def kind(self) -> PluginTree:
        """``local`` or ``remote``: which plugin tree the executable lives in."""
        return self.opType.tree

    def option_types(self) -> dict[str, str]:
        """``opt -> type``, the ``desc`` map of a params.json op."""
        return {o.opt: o.type for o in self.option}

    def output_defaults(self) -> dict[str, Any]:
        """Declared outputs with their default (None if none), filled into missing outputs."""
        return {o.opt: o.defaultValue for o in self.output}

    def to_json_dict(self) -> dict[str, Any]:
        """Console-shaped JSON: original key names, flags back as ``"true"``/``"false"``, extras kept."""
        data = self.model_dump(by_alias=True, exclude_unset=True)
        data["opType"] = self.opType.value
        data["enabled"] = 1 if self.enabled else 0
        for item in [*data.get("option", []), *([data["argument"]] if data.get("argument") else [])]:
            for key in ("required", "isConst"):
                if key in item:
                    item[key] = "true" if item[key] else "false"
        return data


def parse_descriptor(data: Any, source: str = "<descriptor>") -> ToolDescriptor:
    if not isinstance(data, dict):
        raise DescriptorError(f"{source}: (top level): expected a JSON object, got {type(data).__name__}")
    try:
        return ToolDescriptor.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = first["msg"].removeprefix("Value error, ")
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise DescriptorError(f"{source}: {field_path(first['loc']) or '(top level)'}: {msg}{more}") from None


def load_descriptor(path: Path | str, tree: str | None = None) -> ToolDescriptor:
    """Read and validate one descriptor; every problem is a one-line :class:`DescriptorError`."""
    return read_descriptor(path, tree)[1]


def read_descriptor(path: Path | str, tree: str | None = None) -> tuple[dict[str, Any], ToolDescriptor]:
    """The descriptor as written (a JSON object) and validated.

    With the plugin ``tree`` it was found in, its ``opType`` follows that tree as the console
    wants it (:meth:`OpType.for_tree`: a missing type in the local tree is ``runner``, any tool
    of the remote tree is ``target``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DescriptorError(f"{path}: cannot read: {exc.__class__.__name__}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DescriptorError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    checked = data
    if tree is not None and isinstance(data, dict):
        checked = dict(data, opType=OpType.for_tree(tree, data.get("opType")))
    return data, parse_descriptor(checked, str(path))


@dataclass(frozen=True)
class Tool:
    """One tool of the catalogue: where its descriptor is, not yet read."""

    tree: PluginTree
    op_name: str
    """``<bundle>/<tool>``."""
    path: Path
    """The descriptor."""
    problem: str | None = None
    """Why this descriptor cannot describe the tool (it is then not registered)."""

    def load(self) -> tuple[dict[str, Any], ToolDescriptor]:
        """(as written, validated): see :func:`read_descriptor`; a :class:`DescriptorError` when
        the tool has a ``problem``."""
        if self.problem is not None:
            raise DescriptorError(f"{self.path}: {self.problem}")
        return read_descriptor(self.path, self.tree)


def _catalogue_entry(tree: PluginTree, op_name: str, descriptor: Path, plugin_dirs: Sequence[Path]) -> Tool:
    """The tool ``descriptor`` names, as :func:`find_tool` (running) resolves it: an executable
    without a descriptor in an earlier plugin dir is what runs, so this descriptor must not be
    sent as its description."""
    try:
        found = find_tool(op_name, tree, plugin_dirs)
    except ToolNotFound as exc:
        return Tool(tree, op_name, descriptor, str(exc))
    if found.descriptor == descriptor:
        return Tool(tree, op_name, descriptor)
    if found.descriptor is None:
        why = f"{found.executable} of an earlier plugin dir is what runs and has no descriptor; put one beside it"
    else:
        why = f"{found.descriptor} of an earlier plugin dir hides it"
    return Tool(tree, op_name, descriptor, f"not used: {why}")


def discover_tools(plugin_dirs: Iterable[Path]) -> list[Tool]:
    """Every tool the plugin dirs describe, local tree first, by opName, each resolved by
    :func:`find_tool` as a run resolves it: the first plugin dir holding the tool's executable or
    descriptor provides it (``$AUTOEXEC_HOME/plugins`` before the bundled ones). A descriptor is a
    tool when its bundle is ``native``, its name starts with the bundle's, or an executable of its
    name is next to it (the original's rule)."""
    dirs = [Path(d) for d in plugin_dirs]
    found: dict[tuple[PluginTree, str], Tool] = {}
    for root in dirs:
        for tree in TREES:
            base = root / tree
            if not base.is_dir():
                continue
            for bundle in sorted(p for p in base.iterdir() if p.is_dir()):
                for desc in sorted(bundle.glob("*.json")):
                    name = desc.stem
                    if not (bundle.name == "native" or name.startswith(bundle.name) or (bundle / name).exists()):
                        continue
                    op_name = f"{bundle.name}/{name}"
                    if (tree, op_name) not in found:
                        found[(tree, op_name)] = _catalogue_entry(tree, op_name, desc, dirs)
    return sorted(found.values(), key=lambda t: (TREES.index(t.tree), t.op_name))
