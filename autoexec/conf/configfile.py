"""``conf/config.ini`` as a typed model: its text, its sections, and :class:`ConfigValues`.

The original reads the keys of every section into one flat namespace (``server.*`` usually sit in
``[server]``, the rest in ``[autoexec]``, but any section works and a later one wins), so the model
is flat and keyed by the original's key names; keys it does not declare are kept (tools read
config.ini too). A bad value is one :class:`ConfigError` line naming the file, the section and the
key (or the ``AUTOEXEC_*`` variable that overrode it), never a secret value. Decryption of
``{ENCRYPTED}`` values (:mod:`autoexec.conf.secrets`) happens between reading and typing.
"""
from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from autoexec.conf.settings import ConfigError

__all__ = ["ConfigError", "ConfigFile", "ConfigValues", "read_config_text"]


def read_config_text(path: Path) -> str:
    """config.ini as text: one :class:`ConfigError` line for a file that is unreadable, not UTF-8
    or holds a NUL (which no value may contain)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: line {text.count(chr(10), 0, text.index(chr(0))) + 1}: contains a NUL character")
    return text


class _CasePreservingParser(configparser.ConfigParser):
    """Keys as written: names such as ``job.maxExecSecs`` and ``server.verifyTLS`` are read back by
    exact name (here and by tools), and ConfigParser lower-cases keys by default."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


@dataclass(frozen=True)
class ConfigFile:
    """config.ini as read: section -> key -> value (keys case-preserved, values stripped), in file
    order. Plain data the parser built, not an edge: :class:`ConfigValues` is the validated model."""

    path: Path
    sections: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> ConfigFile:
        """A missing file is an empty one (devmode needs no config)."""
        if not path.exists():
            return cls(path=path)
        parser = _CasePreservingParser(interpolation=None)
        try:
            parser.read_string(read_config_text(path), source=str(path))
        except configparser.Error as exc:
            raise ConfigError(f"{path}: cannot parse: {str(exc).splitlines()[0]}") from None
        return cls(path=path, sections={s: {k: v.strip() for k, v in parser.items(s)} for s in parser.sections()})

    def flat(self) -> tuple[dict[str, str], dict[str, str]]:
        """The original's flat view (a later section wins) and, per key, where it came from
        (``<file> [<section>]``); ``tenant`` stands in for ``server.tenant``."""
        values: dict[str, str] = {}
        origin: dict[str, str] = {}
        for section, keys in self.sections.items():
            for key, value in keys.items():
                values[key] = value
                origin[key] = f"{self.path} [{section}]"
        if "tenant" in values and "server.tenant" not in values:
            values["server.tenant"] = values["tenant"]
            origin["server.tenant"] = origin["tenant"]
        return values, origin


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


class ConfigValues(BaseModel):
    """The keys autoexec uses, typed; an empty value means the default, as in the original."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=False)

    server_baseurl: str = Field("", alias="server.baseurl", description="the neatlogic console, http:// or https://")
    server_username: str = Field("", alias="server.username", description="console account")
    server_password: str = Field("", alias="server.password", description="console token ({ENCRYPTED} with password.key)", repr=False)
    password_key: str = Field("", alias="password.key", description="RC4 key of the other secrets ({ENCRYPTED} with the master key)",
                              repr=False)
    server_tenant: str = Field("", alias="server.tenant", description="tenant (the original's key is plain `tenant`)")
    server_verify_tls: bool = Field(True, alias="server.verifyTLS", description="0: do not check the console's certificate")
    server_ca_file: str = Field("", alias="server.caFile", description="CA bundle to trust for an https:// console")
    rexec_fail_reservedir: bool = Field(False, alias="rexec.fail.reservedir",
                                        description="keep a failed remote op's directory (anything but 0 or empty)")
    job_max_exec_secs: float = Field(86400.0, alias="job.maxExecSecs", description="op time limit (seconds)")
    rexec_connect_timeout: float = Field(60.0, alias="rexec.connectTimeout", description="remote connect timeout (seconds)")
    rexec_read_timeout: float = Field(3600.0, alias="rexec.readTimeout", description="remote read timeout (seconds)")
    rexec_write_timeout: float = Field(60.0, alias="rexec.writeTimeout", description="remote write timeout (seconds)")
    db_url: str = Field("", alias="db.url", description="MongoDB mirror (empty: none)")
    db_max_pool_size: float = Field(64, alias="db.maxPoolSize", description="MongoDB connection pool size")
    db_name: str = Field("autoexec", alias="db.name", description="MongoDB database")
    db_username: str = Field("", alias="db.username", description="MongoDB account")
    db_password: str = Field("", alias="db.password", description="MongoDB password ({ENCRYPTED} with password.key)", repr=False)
    db_verify_tls: bool = Field(True, alias="db.verifyTLS", description="0: do not check MongoDB's certificate")
    db_ca_file: str = Field("", alias="db.caFile", description="CA bundle to trust for MongoDB with TLS")
    deploy_possible_encodings: str = Field("GBK,UTF-8", alias="deploy.possibleEncodings",
                                           description="encodings tools try on deployed files")
    plugins_path: str = Field("", alias="plugins.path", description="plugin trees used in place, os.pathsep-separated")
    output_charsets: str = Field("", alias="output.charsets",
                                 description="charsets tried in order for a tool output line that is not UTF-8 (default GB18030)")

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        if _blank(value):
            return cls.model_fields[str(info.field_name)].default
        return value.strip() if isinstance(value, str) else value

    @field_validator("server_baseurl")
    @classmethod
    def _url(cls, value: str) -> str:
        url = value.rstrip("/")
        if url and not url.lower().startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url

    @field_validator("server_verify_tls", "db_verify_tls", mode="before")
    @classmethod
    def _flag(cls, value: Any, info: ValidationInfo) -> Any:
        text = str(value).strip().lower()
        if _blank(value):
            return cls.model_fields[str(info.field_name)].default
        if isinstance(value, bool):
            return value
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("must be 1 or 0 (true or false)")

    @field_validator("rexec_fail_reservedir", mode="before")
    @classmethod
    def _reservedir(cls, value: Any) -> bool:
        if value is None:
            return False
        return value if isinstance(value, bool) else str(value) not in ("", "0")

    @field_validator("job_max_exec_secs", "rexec_connect_timeout", "rexec_read_timeout", "rexec_write_timeout",
                     "db_max_pool_size", mode="before")
    @classmethod
    def _positive(cls, value: Any, info: ValidationInfo) -> float:
        if _blank(value):
            return float(cls.model_fields[str(info.field_name)].default)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError("is not a number") from None
        if number <= 0:
            raise ValueError("must be positive")
        return number

    @field_validator("server_ca_file", "db_ca_file")
    @classmethod
    def _ca_file(cls, value: str) -> str:
        if value and not Path(value).expanduser().is_file():
            raise ValueError(": no such CA bundle file")
        return str(Path(value).expanduser()) if value else ""

    @classmethod
    def parse(cls, values: dict[str, str], origin: dict[str, str], fallback: str) -> ConfigValues:
        """Type ``values``; a bad one is a :class:`ConfigError` naming ``origin[key]`` (else ``fallback``)."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = str(err["loc"][0]) if err["loc"] else "?"
            msg = str(err["msg"]).removeprefix("Value error, ")
            sep = "" if msg.startswith(":") else " "
            raise ConfigError(f"{origin.get(key, fallback)}: {key} = {values.get(key)!r}{sep}{msg}") from None
