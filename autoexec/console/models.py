"""Wire shapes of the console calls: request payloads and the response envelope.

Field names are snake_case in Python and serialise to the console's camelCase through an alias
generator, so a misspelt field is a Python error rather than a silently ignored JSON key. Field
order follows the original payloads, which keeps request bodies (and thus signatures) identical.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Envelope(BaseModel):
    """``{"Status": "OK", "Return": ..., "TimeCost": ms}`` or ``{"Status": "ERROR", "Message": ...}``."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    status: str = Field(default="", alias="Status")
    return_: Any = Field(default=None, alias="Return")
    message: str | None = Field(default=None, alias="Message")
    time_cost: float | None = Field(default=None, alias="TimeCost")

    @property
    def ok(self) -> bool:
        return self.status == "OK"


class Payload(BaseModel):
    """Base of request bodies: camelCase on the wire, nothing unexpected accepted."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


class GetParams(Payload):
    job_id: str
    last_modified: float = 0


class NodeStatus(Payload):
    job_id: str
    group_no: int
    phase: str
    resource_id: int | str
    host: str
    port: int | str
    status: str
    fail_ignore: int
    warn_count: int
    time: float
    pass_through_env: dict[str, Any]


class PhaseStatus(Payload):
    job_id: str
    group_no: int
    phase: str
    status: str
    fail_node_count: int
    suc_node_count: int
    skip_node_count: int
    ignore_fail_node_count: int
    warn_count: int
    time: float
    pass_through_env: dict[str, Any]


class FireNextGroup(Payload):
    job_id: str
    runner_id: int
    group_no: int
    time: float
    pass_through_env: dict[str, Any]


class RoundEnded(Payload):
    job_id: str
    runner_id: int
    group_no: int
    phase: str
    round_no: int
    time: float
    pid: int
    pass_through_env: dict[str, Any]


class JobStatus(Payload):
    job_id: str
    time: float
    status: str
    pass_through_env: dict[str, Any]


class ExportEnv(Payload):
    job_id: str
    env_name: str
    env_value: str
    is_hidden: int
    time: float
    pass_through_env: dict[str, Any]


class GlobalParam(Payload):
    job_id: str
    key: str
    default_value: Any
    time: float
    pass_through_env: dict[str, Any]


class GetAccount(Payload):
    job_id: str
    resource_id: int | str | None
    host: str
    port: int | str | None
    username: str | None
    account_id: int | str | None
    protocol: str | None


class CleanNativeTools(Payload):
    import_time: int


class NodeStatusAnswer(BaseModel):
    """``Return`` of updateNodeStatus; ``hasFailNode == 1`` means another runner saw a failure."""

    model_config = ConfigDict(extra="allow")

    hasFailNode: int = 0


class MongoDBConf(BaseModel):
    """``Return`` of getMongoDBConf; the password is kept out of reprs."""

    model_config = ConfigDict(extra="allow")

    host: str
    option: str | None = None
    database: str | None = None
    username: str | None = None
    passwordPlain: str | None = Field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Built the way the original does."""
        return f"mongodb://{self.host}/?{self.option}" if self.option else f"mongodb://{self.host}/"


class ScriptDownload(BaseModel):
    """What fetch_script learned from the response headers and where the body went."""

    script_id: str
    name: str
    version_id: str
    is_lib: bool
    use_libs: list[str]
    interpreter: str
    path: str
    file_name: str


class FetchedFile(BaseModel):
    file_id: str
    name: str
    path: str
    downloaded: bool
