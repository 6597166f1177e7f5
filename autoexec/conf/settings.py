"""Every ``AUTOEXEC_*`` variable autoexec reads, declared once (type, default, meaning) in
:class:`Settings`; the README's table is generated from it (``python -m autoexec.conf.settings``).
A bad value is one :class:`SettingsError` line naming the variable (the CLI exits 2), never a
traceback or a silent fallback. :func:`load_settings` reads the environment at each call (cached
per distinct ``AUTOEXEC_*`` values), so no live instance is held; an empty variable counts as unset.
A plain pydantic model filled by ``_from_environment``, not pydantic-settings: importing that adds
a large share to the start-up time and memory of every short-lived process (CLI, recorder) for
what is a prefix match over ``os.environ`` here (figures in docs/performance.md).
Not settings: :data:`TOOL_ENVIRONMENT` (what the runner sets for its tools) and
:data:`OTHER_VARIABLES`; the stand-alone tool library parses ``AUTOEXEC_TOOL_CONSOLE_TIMEOUT`` itself.
"""
from __future__ import annotations

import functools
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from collections.abc import Mapping

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo

from autoexec.conf.errors import AutoexecError

PREFIX = "AUTOEXEC_"

#: The tool-environment contract: set by the runner for tools and the processes it starts, read by
#: them (``AutoExecUtils``, scripts), never by autoexec as settings.
TOOL_ENVIRONMENT = ("AUTOEXEC_JOBID", "AUTOEXEC_PID", "AUTOEXEC_USER", "AUTOEXEC_HOME", "AUTOEXEC_WORK_PATH",
                    "AUTOEXEC_TENANT", "AUTOEXEC_DEV_MODE", "AUTOEXEC_PHASE_NAME", "AUTOEXEC_NODE",
                    "AUTOEXEC_NODE_PASSWORD", "AUTOEXEC_NODES_PATH", "AUTOEXEC_NODE_KEY", "AUTOEXEC_JOB_SOCK")
#: Neither settings nor tool contract: the locked descriptor a starting job hands to the recorder
#: it spawns (private to the two processes), and a variable read by the test suite only.
OTHER_VARIABLES = ("AUTOEXEC_RECORDER_LOCK_FD", "AUTOEXEC_TEST_MONGO_URL")

Seconds = Annotated[float, Field(gt=0)]
Wait = Annotated[float, Field(ge=0)]


def _handshakes(value: str) -> str:
    if not re.fullmatch(r"\s*[1-9]\d*\s*(,\s*[1-9]\d*\s*)?", value):
        raise ValueError("expected PER_DEST[,TOTAL] (positive integers)")
    return value.strip()


Handshakes = Annotated[str, AfterValidator(_handshakes)]


class ConfigError(AutoexecError):
    """A configuration value that cannot be used (config.ini or the environment); the message is
    one line naming the file and key, or the variable, never a secret value."""


class SettingsError(ConfigError):
    """An ``AUTOEXEC_*`` variable with a value of the wrong type or out of range."""


def _shown(text: str) -> dict[str, Any]:
    """How the README shows a default that is not a literal value."""
    return {"shown_default": text}


_CONFIG_INI = _shown("config.ini")
_NONE = _shown("—")


class Settings(BaseModel):
    """The ``AUTOEXEC_*`` settings; field ``x_y`` is variable ``AUTOEXEC_X_Y`` (any case)."""

    #: Built on first full validation only: a start-up reads defaults plus a few set variables,
    #: which ``_load`` validates through a model of just those fields (every rule is on the field).
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    home: Path | None = Field(None, description="config, plugins, job data, Prefect server and spool, logs",
                              json_schema_extra=_shown("`~/.autoexec`"))

    # --- overrides of config.ini keys (handy for containers and tests) ---
    server_baseurl: str | None = Field(None, description="overrides `server.baseurl`: the console (production mode)",
                                       json_schema_extra=_CONFIG_INI)
    server_username: str | None = Field(None, description="overrides `server.username`", json_schema_extra=_CONFIG_INI)
    server_password: str | None = Field(None, description="overrides `server.password`", json_schema_extra=_CONFIG_INI,
                                        repr=False)
    server_verify_tls: bool | None = Field(None, description="overrides `server.verifyTLS`", json_schema_extra=_CONFIG_INI)
    server_ca_file: str | None = Field(None, description="overrides `server.caFile`", json_schema_extra=_CONFIG_INI)
    db_url: str | None = Field(None, description="overrides `db.url`: the MongoDB mirror", json_schema_extra=_CONFIG_INI)
    db_name: str | None = Field(None, description="overrides `db.name`", json_schema_extra=_CONFIG_INI)
    db_username: str | None = Field(None, description="overrides `db.username`", json_schema_extra=_CONFIG_INI)
    db_password: str | None = Field(None, description="overrides `db.password`", json_schema_extra=_CONFIG_INI, repr=False)
    max_exec_secs: Seconds | None = Field(None, description="overrides `job.maxExecSecs`: op time limit",
                                          json_schema_extra=_CONFIG_INI)
    connect_timeout: Seconds | None = Field(None, description="overrides `rexec.connectTimeout`", json_schema_extra=_CONFIG_INI)
    read_timeout: Seconds | None = Field(None, description="overrides `rexec.readTimeout`", json_schema_extra=_CONFIG_INI)
    write_timeout: Seconds | None = Field(None, description="overrides `rexec.writeTimeout`", json_schema_extra=_CONFIG_INI)
    plugins_path: str | None = Field(None, description="overrides `plugins.path`: plugin trees used in place",
                                     json_schema_extra=_CONFIG_INI)
    output_charsets: str | None = Field(None, description="overrides `output.charsets`: charsets tried in order for a tool "
                                        "output line that is not UTF-8 (after the charset a Tagent agent declares), the "
                                        "same on the runner, over SSH and Tagent", json_schema_extra=_CONFIG_INI)

    # --- Prefect blocks standing in for config.ini ---
    console_block: str | None = Field(None, description="Prefect block with the console's credentials (see Production mode)",
                                      json_schema_extra=_NONE)
    mongodb_block: str | None = Field(None, description="Prefect block with the MongoDB connection, used when `db.url` is not set",
                                      json_schema_extra=_NONE)
    node_credentials_block: str | None = Field(None, description="default Prefect block of node credentials",
                                               json_schema_extra=_NONE)

    # --- the console ---
    console_retries: int = Field(4, ge=0, description="attempts to reach the console while fetching inputs (0 counts as 1)")
    console_connect_timeout: Seconds = Field(10, description="console HTTP connect timeout (seconds)")
    console_read_timeout: Seconds = Field(60, description="console HTTP read timeout (seconds)")
    outbox_flush_secs: Wait | None = Field(
        None, description="how long the CLI waits at the end for queued console callbacks (30 for the status `--abort`/`--pause` "
        "send for a job that is not running)",
        json_schema_extra=_shown("60"))
    tool_console_timeout: Seconds = Field(60, description="console request timeout of the tool library (`ServerAdapter`)")

    # --- running ---
    max_parallel: int = Field(64, description="global cap of nodes at once per phase (below 1 counts as 1)")
    spawn: Literal["posix_spawn", "popen"] = Field(
        "posix_spawn", description="`popen`: start children with `subprocess.Popen` instead of `posix_spawn`")
    ssh_max_handshakes: Handshakes = Field(
        "8,32", description="`PER_DEST[,TOTAL]`: concurrent SSH handshakes per host and in total (a stock sshd "
        "`MaxStartups 10:30:100` never refuses a job)")
    ssh_known_hosts: Path | None = Field(None, description="known_hosts file for strict host key policies",
                                         json_schema_extra=_shown("`$AUTOEXEC_HOME/known_hosts`"))
    echo: bool = Field(False, description="`1`: echo console log lines to stdout even without a terminal")

    # --- the Prefect record ---
    node_tasks_max: int = Field(256, ge=1, description="phases with more nodes are one Prefect task run")
    prefect_wait: Wait | None = Field(None, description="seconds the CLI waits for its Prefect record to be complete",
                                      json_schema_extra=_NONE)
    prefect_record: bool = Field(True, description="`0`: a CLI job writes its spool but starts no recorder (one started later records it)")
    recorder_idle_secs: Wait = Field(600, description="the recorder exits after this long without spools (0 = never; `autoexec-server start` uses 0)")
    recorder_api_concurrency: int = Field(2, ge=1, description="API calls the recorder keeps in flight (SQLite writes one at a time)")
    recorder_nice: int = Field(10, description="priority (nice increment) of the recorder")
    recorder_verbose: bool = Field(False, description="`1`: the recorder logs at debug level (`-v` sets it when it starts one)")
    prefect_start_secs: Seconds = Field(180, description="how long a first start of the embedded server may take")
    prefect_port: int | None = Field(
        None, ge=1, le=65535, json_schema_extra=_shown("a free port"),
        description="port of the embedded Prefect server when autoexec starts it (127.0.0.1 only); set it to reach "
        "the UI at a fixed address (the UI is told its API URL either way)")
    prefect_server_nice: int = Field(10, description="priority (nice increment) of the embedded Prefect server")
    prefect_watch: bool = Field(True, description="deployment runs: `0`: do not watch the flow run for UI Cancel/Pause "
                                "(CLI runs: the recorder watches)")
    prefect_watch_seconds: Seconds = Field(1, description="deployment runs: poll interval of that watch")

    def handshake_limits(self, default_total: int) -> tuple[int, int]:
        """``(per destination, total)``; without a total, ``max(default_total, per destination)``."""
        parts = [int(p) for p in self.ssh_max_handshakes.split(",")]
        return parts[0], parts[1] if len(parts) > 1 else max(default_total, parts[0])

    def autoexec_home(self) -> Path:
        return (self.home or Path.home() / ".autoexec").expanduser().resolve()


def env_name(field: str) -> str:
    return PREFIX + field.upper()


_SECRET_FIELDS = frozenset({"server_password", "db_password"})


def _message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        msg = str(err["msg"]).removeprefix("Value error, ")
        shown = "" if field in _SECRET_FIELDS else f"={err.get('input')!r}"
        parts.append(f"{env_name(field)}{shown}: {msg[:1].lower()}{msg[1:]}")
    return "; ".join(parts)


_FIELD_NAMES = frozenset(Settings.model_fields)


def _from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Field name -> raw value of every declared, non-empty ``AUTOEXEC_*`` variable (names in any
    case, as on Windows hosts' exports); undeclared ones are the tool contract's, not settings."""
    cut = len(PREFIX)
    return {key[cut:].lower(): value for key, value in environ.items()
            if value and key[:cut].upper() == PREFIX and key[cut:].lower() in _FIELD_NAMES}


@functools.lru_cache(maxsize=16)
def _load(snapshot: tuple[tuple[str, str], ...]) -> Settings:
    """Validated like ``Settings.model_validate(dict(snapshot))`` (a test holds them equal), but
    only the fields set are built into a validator; the rest are the declared defaults."""
    fields = Settings.model_fields
    definitions: dict[str, Any] = {name: (fields[name].annotation, fields[name]) for name, _ in snapshot}
    present = create_model("SettingsSet", __config__=ConfigDict(extra="forbid"), **definitions)
    try:
        values = present.model_validate(dict(snapshot))
    except ValidationError as exc:
        raise SettingsError(_message(exc)) from None
    defaults = {name: info.default for name, info in fields.items()}
    return Settings.model_construct(**{**defaults, **dict(values)})


def load_settings() -> Settings:
    """The settings as the environment holds them now; :class:`SettingsError` (one line) if a
    variable is bad."""
    return _load(tuple(sorted(_from_environment(os.environ).items())))


def autoexec_home() -> Path:
    """``$AUTOEXEC_HOME`` (default ``~/.autoexec``), absolute."""
    return load_settings().autoexec_home()


# --- the README table ---------------------------------------------------------------------------
def type_label(info: FieldInfo) -> str:
    """The README's "type" column for a field."""
    ann: Any = info.annotation
    if typing.get_origin(ann) in (Union, types.UnionType):
        ann = next(a for a in typing.get_args(ann) if a is not type(None))
    if typing.get_origin(ann) is Annotated:
        ann = typing.get_args(ann)[0]
    if typing.get_origin(ann) is Literal:
        return " or ".join(f"`{a}`" for a in typing.get_args(ann))
    return {bool: "`0`/`1`", int: "integer", float: "seconds", str: "text", Path: "path"}[ann]


def default_label(info: FieldInfo) -> str:
    """The README's "default" column for a field."""
    extra = info.json_schema_extra
    if isinstance(extra, dict) and "shown_default" in extra:
        return str(extra["shown_default"])
    value = info.default
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value is None:
        return "—"
    return f"`{value}`" if isinstance(value, str) else str(value)


def markdown_table() -> str:
    """The README's table of settings, one row per variable, in declaration order."""
    rows = ["| variable | type | default | what |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        rows.append(f"| `{env_name(name)}` | {type_label(info)} | {default_label(info)} | {info.description} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
