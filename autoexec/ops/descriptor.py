"""Tool description JSON: ``plugins/<local|remote>/<bundle>/<tool>.json`` next to the tool.

The console owns the format and existing tools are loose with it (``required`` as ``"true"`` or a
bool, ``validate: null``, ``option: null``, ad-hoc extra keys), so parsing is lenient on shape,
strict on what the runner relies on (``opType``, option/output names), and keeps unknown keys so a
descriptor can be sent back to the console (``--register``) without losing anything.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from autoexec.models.params import field_path
from autoexec.ops.tools import ToolNotFound

OP_TYPES = ("runner", "runner_target", "target", "native", "sqlfile")
KIND_OF_OP_TYPE = {"runner": "local", "runner_target": "local", "native": "local", "sqlfile": "local", "target": "remote"}


class DescriptorError(ValueError):
    """One line: ``<file>: <field>: <problem>``."""


def _flag(value: Any) -> bool:
    """``"true"``/``"false"``, bools and 0/1 as the console and hand-written descriptors use them."""
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {value!r}")


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
    opType: str
    typeName: str = ""
    riskName: str = ""
    interpreter: str | None = None
    defaultProfile: Any = None
    description: str | None = ""
    enabled: bool = True
    option: list[OptionDesc] = Field(default_factory=list)
    argument: ArgumentDesc | None = None
    output: list[OutputDesc] = Field(default_factory=list)

    @field_validator("opType")
    @classmethod
    def _known_op_type(cls, value: str) -> str:
        if value not in OP_TYPES:
            raise ValueError(f"must be one of {', '.join(OP_TYPES)}, got {value!r}")
        return value

    @field_validator("enabled", mode="before")
    @classmethod
    def _enabled(cls, value: Any) -> bool:
        return True if value is None else _flag(value)

    @field_validator("option", "output", mode="before")
    @classmethod
    def _null_list(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def kind(self) -> str:
        """``local`` or ``remote``: which plugin tree the executable lives in."""
        return KIND_OF_OP_TYPE[self.opType]

    def option_types(self) -> dict[str, str]:
        """``opt -> type``, the ``desc`` map of a params.json op."""
        return {o.opt: o.type for o in self.option}

    def output_defaults(self) -> dict[str, Any]:
        """Declared outputs with their default (None if none), filled into missing outputs."""
        return {o.opt: o.defaultValue for o in self.output}

    def to_json_dict(self) -> dict[str, Any]:
        """Console-shaped JSON: original key names, flags back as ``"true"``/``"false"``, extras kept."""
        data = self.model_dump(by_alias=True, exclude_unset=True)
        data["opType"] = self.opType
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


def load_descriptor(path: Path | str) -> ToolDescriptor:
    """Read and validate one descriptor; every problem is a one-line :class:`DescriptorError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DescriptorError(f"{path}: cannot read: {exc.__class__.__name__}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DescriptorError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return parse_descriptor(data, str(path))


def _split_op_name(op_name: str) -> tuple[str, ...]:
    parts = tuple(op_name.split("/"))
    if op_name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ToolNotFound(f"invalid tool name {op_name!r}")
    return parts


def find_tool(op_name: str, kind: str, plugin_dirs: Sequence[Path]) -> tuple[Path, Path | None]:
    """``(descriptor, executable)`` of ``<bundle>/<tool>`` in the first plugin dir that has it.

    ``kind`` is ``local``/``remote`` or an ``opType``. The executable is ``None`` for JSON-only
    native tools. Earlier plugin dirs win (``$AUTOEXEC_HOME/plugins`` before the bundled ones).
    """
    kind = KIND_OF_OP_TYPE.get(kind, kind)
    if kind not in ("local", "remote"):
        raise ToolNotFound(f"unknown tool kind {kind!r}")
    parts = _split_op_name(op_name)
    for base in plugin_dirs:
        tool = Path(base, kind, *parts)
        descriptor = tool.with_name(tool.name + ".json")
        if descriptor.is_file():
            return descriptor, (tool if tool.is_file() else None)
    searched = ", ".join(str(Path(base, kind, *parts)) + ".json" for base in plugin_dirs)
    raise ToolNotFound(f"Plugin not exists {op_name} (looked in {searched})")


def iter_descriptors(plugin_dir: Path) -> Iterator[tuple[str, str, Path]]:
    """``(op_name, kind, descriptor_path)`` of every tool under one plugin dir (``lib`` skipped)."""
    for kind in ("local", "remote"):
        root = Path(plugin_dir, kind)
        if not root.is_dir():
            continue
        for path in sorted(root.glob("*/*.json")):
            if path.parent.name != "lib":
                yield f"{path.parent.name}/{path.stem}", kind, path
