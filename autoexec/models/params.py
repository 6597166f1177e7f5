"""params.json as the console sends it. Unknown fields are kept, so a newer console's
extras survive a round trip through the runner."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from autoexec.conf.errors import AutoexecError
from autoexec.models.optype import ExecKind, OpType
from autoexec.models.text import TextProblem, check_name, check_tree, loads_checked

_TYPES = frozenset(t.value for t in OpType)
_TYPE_NAMES = ", ".join(sorted(_TYPES))
EXEC_STRATEGIES = ("oneShot", "grayScale")


class JobInputError(AutoexecError):
    """Malformed job input; the message is one line naming file, field/line and problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Operation(_Model):
    opId: str
    opName: str
    opType: str = "runner"
    isScript: int | bool = 0
    scriptId: int | str | None = None
    scriptContent: str | None = None
    interpreter: str | None = None
    failIgnore: int | bool | str | None = 0
    help: str | None = None
    opt: dict[str, Any] = Field(default_factory=dict)
    desc: dict[str, str] = Field(default_factory=dict)
    arg: list[dict[str, Any]] | None = None
    output: dict[str, Any] | None = None
    condition: str | None = None
    retries: int = Field(default=0, ge=0, le=100)
    """Further attempts after a failed one, on the same node (beyond the original)."""
    retryDelay: float = Field(default=0, ge=0, le=86400)
    """Seconds between attempts; an abort or pause ends the wait at once."""
    if_ops: list["Operation"] | None = Field(default=None, alias="if")
    else_ops: list["Operation"] | None = Field(default=None, alias="else")

    @field_validator("opType")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in _TYPES:
            raise ValueError(f"unknown opType {value!r} (expected one of {_TYPE_NAMES})")
        return value

    @field_validator("opt", "desc", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return value or {}

    @field_validator("opId", "opName")
    @classmethod
    def _file_name(cls, value: str) -> str:
        return check_name(value, "the id")  # output-op/<node>/<opId>.json, plugin paths

    @field_validator("retries", "retryDelay", mode="before")
    @classmethod
    def _number_not_bool(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, not {value!r}")
        return value

    @property
    def kind(self) -> ExecKind:
        """Where it runs: ``local``, ``remote``, ``localremote`` or ``native``."""
        return OpType(self.opType).kind

    @property
    def is_if_block(self) -> bool:
        return self.opName == "native/IF-Block"

    @property
    def fail_ignore(self) -> bool:
        return str(self.failIgnore).lower() not in ("0", "", "false", "none")

    @property
    def is_script(self) -> bool:
        return bool(self.isScript)

    @property
    def bundle(self) -> str:
        return self.opName.rsplit("/", 1)[0] if "/" in self.opName else ""

    @property
    def sub_name(self) -> str:
        return self.opName.rsplit("/", 1)[-1]

    def walk(self) -> list["Operation"]:
        """This op and every op nested in IF-Block branches."""
        found = [self]
        for child in (self.if_ops or []) + (self.else_ops or []):
            found.extend(child.walk())
        return found


class FailLimits(_Model):
    """Failed nodes tolerated before the job stops starting nodes (see :mod:`autoexec.job.thresholds`)."""

    maxFailCount: int | None = Field(default=None, ge=0)
    maxFailPercent: float | None = Field(default=None, ge=0, le=100)

    @field_validator("maxFailCount", "maxFailPercent", mode="before")
    @classmethod
    def _number_not_bool(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"must be a number, not {value!r}")
        return value


class Phase(FailLimits):
    phaseName: str = Field(min_length=1)
    phaseType: str | None = None
    roundCount: int | None = None
    execRound: Literal["first", "middle", "last"] | None = None
    operations: list[Operation] = Field(default_factory=list)

    @field_validator("phaseName")
    @classmethod
    def _file_name(cls, value: str) -> str:
        return check_name(value, "phaseName")  # log/<phase>/, status/<phase>/, nodes-ph-<phase>.json

    @field_validator("phaseType")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        if value is not None and value not in _TYPES:
            raise ValueError(f"unknown phaseType {value!r} (expected one of {_TYPE_NAMES})")
        return value

    @property
    def runs_on_runner(self) -> bool:
        """A runner-typed phase, or one containing any runner op, runs once on the runner."""
        if self.phaseType is not None and OpType(self.phaseType).runs_on_runner:
            return True
        return any(op.kind is ExecKind.LOCAL for top in self.operations for op in top.walk())


class Group(_Model):
    groupNo: int = Field(ge=0)
    execStrategy: str | None = "oneShot"
    roundCount: int | None = None
    phases: list[Phase] = Field(default_factory=list)

    @field_validator("execStrategy")
    @classmethod
    def _known_strategy(cls, value: str | None) -> str | None:
        if value is not None and value not in EXEC_STRATEGIES:
            raise ValueError(f"unknown execStrategy {value!r} (expected oneShot or grayScale)")
        return value

    @property
    def gray_scale(self) -> bool:
        return self.execStrategy == "grayScale"


class Params(FailLimits):
    jobId: int | str = "0"
    tenant: str | None = None
    execUser: str | None = None
    roundCount: int | None = 0
    opt: dict[str, Any] = Field(default_factory=dict)
    globalOpt: dict[str, Any] = Field(default_factory=dict)
    environment: dict[str, Any] = Field(default_factory=dict)
    passThroughEnv: dict[str, Any] = Field(default_factory=dict)
    runFlow: list[Group] = Field(default_factory=list)
    runNode: list[dict[str, Any]] | None = None

    @field_validator("opt", "globalOpt", "environment", "passThroughEnv", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return value or {}

    @field_validator("opt", "environment")
    @classmethod
    def _environment_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Job options and environment entries become environment variables of every tool."""
        for key in value:
            if not key or "=" in key:
                raise ValueError(f"{key!r} cannot be an environment variable name (empty or contains '=')")
        return value

    @property
    def job_id(self) -> str:
        return str(self.jobId)


def field_path(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as ``runFlow[0].phases[1].phaseName``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def error_text(err: Any) -> str:
    """A pydantic error's message without its ``Value error, `` prefix, on one line."""
    return str(err["msg"]).removeprefix("Value error, ").replace("\n", " ")


def parse_params(data: Any, source: str) -> Params:
    try:
        check_tree(data)
    except TextProblem as exc:
        raise JobInputError(f"{source}: field {exc.where or '(top level)'}: {exc.problem}") from None
    try:
        params = Params.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise JobInputError(f"{source}: field {field_path(err['loc'])}: {error_text(err)}") from None
    seen: set[str] = set()
    for gi, group in enumerate(params.runFlow):
        for pi, phase in enumerate(group.phases):
            if phase.phaseName in seen:
                raise JobInputError(f"{source}: field runFlow[{gi}].phases[{pi}].phaseName: "
                                    f"duplicate phase name {phase.phaseName!r}")
            seen.add(phase.phaseName)
    return params


def read_utf8(path: Path) -> str:
    """The file's text; one :class:`JobInputError` line for a file that cannot be read or is not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JobInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise JobInputError(f"{path}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} "
                            f"at offset {exc.start})") from None


def load_params(path: Path) -> Params:
    text = read_utf8(path)
    try:
        data = loads_checked(text)
    except json.JSONDecodeError as exc:
        raise JobInputError(f"{path}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}") from None
    except ValueError as exc:
        raise JobInputError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise JobInputError(f"{path}: top level must be a JSON object")
    return parse_params(data, str(path))
