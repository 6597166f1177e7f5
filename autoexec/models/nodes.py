"""Nodes files: JSON lines, a header line first, one node per line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from autoexec.jobdir.layout import node_triple
from autoexec.models.params import JobInputError, error_text, read_utf8
from autoexec.conf.secrets import split_marker
from autoexec.models.text import (
    MAX_JSON_DEPTH,
    TextProblem,
    check_name,
    check_tree,
    json_depth_problem,
    text_problem,
)


class NodesHeader(BaseModel):
    model_config = ConfigDict(extra="allow")
    totalCount: int = Field(default=0, ge=0)
    localRunnerId: int = Field(default=1, gt=0)
    jobRunnerIds: list[int] = Field(default_factory=list)


class Node(BaseModel):
    """A target node. Ids are positive: ``0`` is the runner pseudo-node (:data:`RUNNER_NODE`), which
    only the runner itself creates; a nodes file saying ``resourceId: 0`` is refused."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    resourceId: int = Field(gt=0)
    runnerId: int = Field(gt=0)
    host: str = ""
    port: int | str | None = None
    nodeName: str | None = None
    nodeType: str | None = None
    protocol: str = ""
    protocolPort: int | None = None
    servicePorts: dict[str, Any] | None = None
    username: str = "none"
    password: str = Field(default="", repr=False)

    @field_validator("host")
    @classmethod
    def _host_name(cls, value: str) -> str:
        return check_name(value, "host")  # log/<phase>/<host>-<port>-<id>.txt

    @field_validator("password")
    @classmethod
    def _ciphertext(cls, value: str) -> str:
        """A marked password (``{RC4}``, ``{ENCRYPTED}``, ``RC4:``) must carry hex ciphertext."""
        marked = split_marker(value)
        if marked is not None:
            prefix, body = marked[0], marked[1].strip()
            if len(body) % 2 or any(c not in "0123456789abcdefABCDEF" for c in body):
                raise ValueError(f"password marked {prefix} is not hex ciphertext")
        return value

    @field_validator("protocolPort")
    @classmethod
    def _port_range(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= 65535:
            raise ValueError(f"protocol port {value} is not in 0..65535")
        return value

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        """Effective protocol port, as the original picks it: protocolPort, then servicePorts[protocol], then
        ``tagent.<n>``, then the service port."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("username") in (None, ""):
            data["username"] = "none"
        if data.get("password") is None:
            data["password"] = ""
        protocol = str(data.get("protocol") or "")
        pport = data.get("protocolPort")
        sports = data.get("servicePorts") or {}
        if isinstance(sports, dict) and sports.get(protocol) not in (None, ""):
            pport = sports[protocol]
        if protocol.startswith("tagent."):
            pport = protocol.split(".", 1)[1]
            protocol = "tagent"
        if pport in (None, ""):
            pport = data.get("port") or 0
        try:
            data["protocolPort"] = int(pport)
        except (TypeError, ValueError):
            raise ValueError(f"protocol port {pport!r} is not a number") from None
        data["protocol"] = protocol
        return data

    @property
    def port_text(self) -> str:
        """The service port as tools see it (``NODE_PORT``): empty when the node has none."""
        return "" if self.port is None else str(self.port)

    @property
    def triple(self) -> str:
        return node_triple(self.host, self.port, self.resourceId)

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port_text}"

    def public_dict(self) -> dict[str, Any]:
        """The node without its password (records, target-side tools)."""
        return self.model_dump(by_alias=True, exclude={"password"})

    def tool_dict(self, password: str) -> dict[str, Any]:
        """The node as tools see it in ``AUTOEXEC_NODE``, as the original gave it: every field, the
        password decrypted for runner-side tools (they log in to the node with it) and ``""`` for
        target-side ones (which run on the node already)."""
        data = self.model_dump(by_alias=True)
        data["password"] = password
        return data


RUNNER_NODE = Node.model_construct(resourceId=0, runnerId=0, host="local", port=0, protocol="local",
                                   protocolPort=0, username="", password="")


class NodesFile(BaseModel):
    header: NodesHeader
    nodes: list[Node]


def parse_nodes_lines(lines: list[str], source: str) -> NodesFile:
    header: NodesHeader | None = None
    nodes: list[Node] = []
    seen: set[int] = set()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.count("[") + line.count("{") > MAX_JSON_DEPTH and json_depth_problem(line):
            raise JobInputError(f"{source}: line {lineno}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise JobInputError(f"{source}: line {lineno}: invalid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise JobInputError(f"{source}: line {lineno}: expected a JSON object")
        if "\\u" in line or text_problem(line):  # a NUL or lone surrogate: escaped, or raw in inline text
            try:
                check_tree(data)
            except TextProblem as exc:
                raise JobInputError(f"{source}: line {lineno}: field {exc.where}: {exc.problem}") from None
        if header is None:
            try:
                header = NodesHeader.model_validate(data)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise JobInputError(f"{source}: line {lineno} (header): field "
                                    f"{'.'.join(map(str, err['loc']))}: {error_text(err)}") from None
            continue
        try:
            node = Node.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(map(str, err["loc"])) or "node"
            raise JobInputError(f"{source}: line {lineno}: field {field}: {error_text(err)}") from None
        if node.resourceId in seen:
            raise JobInputError(f"{source}: line {lineno}: duplicate resourceId {node.resourceId}")
        seen.add(node.resourceId)
        nodes.append(node)
    return NodesFile(header=header or NodesHeader(totalCount=len(nodes)), nodes=nodes)


def load_nodes(path: Path) -> NodesFile:
    text = read_utf8(path)
    return parse_nodes_lines(text.splitlines(), str(path))

