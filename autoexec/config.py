"""Where autoexec lives on disk and what ``conf/config.ini`` says.

``AUTOEXEC_HOME`` defaults to ``~/.autoexec`` (a pip-installed package has no checkout root to
derive it from, unlike the original). Everything a job writes is below ``$AUTOEXEC_HOME/data``.
Secret handling (``{ENCRYPTED}`` values, in-place encryption) lives in :mod:`autoexec.secrets`;
this module only parses and types the keys.
"""
from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field
from pathlib import Path

from autoexec.errors import AutoexecError
from autoexec.models.flags import parse_flag
from autoexec.transports.decoding import DEFAULT_CHARSETS, parse_charsets

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_PLUGINS = PACKAGE_DIR / "plugins"


def autoexec_home() -> Path:
    return Path(os.environ.get("AUTOEXEC_HOME") or Path.home() / ".autoexec").expanduser().resolve()


class ConfigError(AutoexecError):
    """A config value that cannot be used; the message names the file and key."""


@dataclass(frozen=True)
class Config:
    home: Path
    path: Path
    server_baseurl: str = ""
    server_username: str = ""
    server_password: str = field(default="", repr=False)
    password_key: str = field(default="", repr=False)
    tenant: str = ""
    reserve_dir_on_failure: bool = False
    max_exec_secs: float = 86400.0
    connect_timeout: float = 60.0
    read_timeout: float = 3600.0
    write_timeout: float = 60.0
    db_url: str = ""
    db_max_pool_size: int = 64
    db_name: str = "autoexec"
    db_username: str = ""
    db_password: str = field(default="", repr=False)
    possible_encodings: str = "GBK,UTF-8"
    output_charsets: tuple[str, ...] = DEFAULT_CHARSETS
    """``output.charsets``: what tool output that is not UTF-8 is decoded as, tried in order
    (after a charset the host declares), on every transport."""
    plugin_trees: tuple[Path, ...] = ()
    """Roots of plugin trees named by ``plugins.path`` (each holds ``plugins/local``, ``plugins/remote``)."""
    server_verify_tls: bool | str = True
    """``requests``' ``verify``: ``True`` (the CA bundle shipped with requests), a CA file, or ``False``."""
    db_ca_file: str = ""
    db_verify_tls: bool = True
    raw: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def plugin_dirs(self) -> list[Path]:
        """Where tools are looked up, first match wins: the trees of ``plugins.path`` in order, then
        ``$AUTOEXEC_HOME/plugins``, then the bundled tools."""
        return [*(tree / "plugins" for tree in self.plugin_trees), self.home / "plugins", BUNDLED_PLUGINS]


_ENV_OVERRIDES = {
    # config key -> environment variable that overrides it (handy for containers and tests)
    "server.baseurl": "AUTOEXEC_SERVER_BASEURL",
    "server.username": "AUTOEXEC_SERVER_USERNAME",
    "server.password": "AUTOEXEC_SERVER_PASSWORD",
    "db.url": "AUTOEXEC_DB_URL",
    "db.name": "AUTOEXEC_DB_NAME",
    "db.username": "AUTOEXEC_DB_USERNAME",
    "db.password": "AUTOEXEC_DB_PASSWORD",
    "job.maxExecSecs": "AUTOEXEC_MAX_EXEC_SECS",
    "rexec.connectTimeout": "AUTOEXEC_CONNECT_TIMEOUT",
    "rexec.readTimeout": "AUTOEXEC_READ_TIMEOUT",
    "rexec.writeTimeout": "AUTOEXEC_WRITE_TIMEOUT",
    "plugins.path": "AUTOEXEC_PLUGINS_PATH",
    "server.verifyTLS": "AUTOEXEC_SERVER_VERIFY_TLS",
    "server.caFile": "AUTOEXEC_SERVER_CA_FILE",
    "output.charsets": "AUTOEXEC_OUTPUT_CHARSETS",
}


def read_config_values(path: Path) -> dict[str, str]:
    """All ``key = value`` pairs of every section, keys case-preserved, plus env overrides."""
    values: dict[str, str] = {}
    if path.exists():
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            parser.read_string(read_config_text(path), source=str(path))
        except configparser.Error as exc:
            raise ConfigError(f"{path}: cannot parse: {str(exc).splitlines()[0]}") from None
        for section in parser.sections():
            for key, value in parser.items(section):
                values[key] = value.strip()
        if "tenant" in values and "server.tenant" not in values:
            values["server.tenant"] = values["tenant"]
    for key, env in _ENV_OVERRIDES.items():
        if os.environ.get(env):
            values[key] = os.environ[env]
    return values


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




def _flag(values: dict[str, str], key: str, default: bool, path: Path) -> bool:
    raw = values.get(key, "").strip()
    if raw == "":
        return default
    flag = parse_flag(raw)
    if flag is not None:
        return flag
    raise ConfigError(f"{path}: {key} = {values[key]!r} must be 1 or 0 (true or false)")


def _ca_file(values: dict[str, str], key: str, path: Path) -> str:
    raw = values.get(key, "").strip()
    if raw and not Path(raw).expanduser().is_file():
        raise ConfigError(f"{path}: {key} = {raw!r}: no such CA bundle file")
    return str(Path(raw).expanduser()) if raw else ""


def _charsets(values: dict[str, str], key: str, path: Path) -> tuple[str, ...]:
    try:
        return parse_charsets(values.get(key, ""))
    except LookupError as exc:
        source = "AUTOEXEC_OUTPUT_CHARSETS" if os.environ.get("AUTOEXEC_OUTPUT_CHARSETS") else str(path)
        raise ConfigError(f"{source}: {key}: {exc}") from None


def _base_url(values: dict[str, str], path: Path) -> str:
    url = values.get("server.baseurl", "").rstrip("/")
    if url and not url.lower().startswith(("http://", "https://")):
        raise ConfigError(f"{path}: server.baseurl = {url!r} must start with http:// or https://")
    return url


def _number(values: dict[str, str], key: str, default: float, path: Path) -> float:
    raw = values.get(key, "")
    if raw == "":
        return default
    try:
        number = float(raw)
    except ValueError:
        raise ConfigError(f"{path}: {key} = {raw!r} is not a number") from None
    if number <= 0:
        raise ConfigError(f"{path}: {key} = {raw!r} must be positive")
    return number


def parse_plugin_trees(text: str, home: Path, source: str) -> tuple[Path, ...]:
    """``plugins.path``: directories separated by ``os.pathsep``, each the root of a plugin tree in
    the original's layout (the directory holding ``plugins/``, as the original's installation
    directory does, so its tools find ``conf/`` and ``lib/`` beside it). Relative entries are taken
    from ``AUTOEXEC_HOME``; a wrong entry is an error naming it rather than a tool "not found" later."""
    trees: list[Path] = []
    for entry in text.split(os.pathsep):
        entry = entry.strip()
        if not entry:
            continue
        root = (home / Path(entry).expanduser()).absolute()
        if not (root / "plugins").is_dir():
            hint = " (name the tree's root, the directory that holds plugins/)" if root.name == "plugins" else ""
            raise ConfigError(f"{source}: plugins.path entry {entry!r}: {root / 'plugins'} is not a directory{hint}")
        if root not in trees:
            trees.append(root)
    return tuple(trees)


def load_config(home: Path | None = None, decrypt: bool = True) -> Config:
    """Parse config.ini (a missing file is fine: devmode needs none of it)."""
    home = home or autoexec_home()
    path = home / "conf" / "config.ini"
    values = read_config_values(path)
    if decrypt:
        from autoexec.secrets import decrypt_config_values

        values = decrypt_config_values(values, path)
    pool = int(_number(values, "db.maxPoolSize", 64, path))
    return Config(
        home=home,
        path=path,
        server_baseurl=_base_url(values, path),
        server_username=values.get("server.username", ""),
        server_password=values.get("server.password", ""),
        password_key=values.get("password.key", ""),
        tenant=values.get("server.tenant", ""),
        reserve_dir_on_failure=values.get("rexec.fail.reservedir", "0") not in ("", "0"),
        max_exec_secs=_number(values, "job.maxExecSecs", 86400, path),
        connect_timeout=_number(values, "rexec.connectTimeout", 60, path),
        read_timeout=_number(values, "rexec.readTimeout", 3600, path),
        write_timeout=_number(values, "rexec.writeTimeout", 60, path),
        db_url=values.get("db.url", ""),
        db_max_pool_size=pool if pool > 0 else 64,
        db_name=values.get("db.name", "") or "autoexec",
        db_username=values.get("db.username", ""),
        db_password=values.get("db.password", ""),
        possible_encodings=values.get("deploy.possibleEncodings", "") or "GBK,UTF-8",
        output_charsets=_charsets(values, "output.charsets", path),
        plugin_trees=parse_plugin_trees(values.get("plugins.path", ""), home,
                                        "AUTOEXEC_PLUGINS_PATH" if os.environ.get("AUTOEXEC_PLUGINS_PATH") else str(path)),
        server_verify_tls=(_ca_file(values, "server.caFile", path) or True)
        if _flag(values, "server.verifyTLS", True, path) else False,
        db_ca_file=_ca_file(values, "db.caFile", path),
        db_verify_tls=_flag(values, "db.verifyTLS", True, path),
        raw=values,
    )
