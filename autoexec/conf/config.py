"""Where autoexec lives on disk and what ``conf/config.ini`` says.

``AUTOEXEC_HOME`` defaults to ``~/.autoexec`` (a pip-installed package has no checkout root to
derive it from, unlike the original). Everything a job writes is below ``$AUTOEXEC_HOME/data``.
The file's model is :mod:`autoexec.conf.configfile`, the ``AUTOEXEC_*`` overrides come from
:mod:`autoexec.conf.settings`, secret handling (``{ENCRYPTED}`` values, in-place encryption) lives in
:mod:`autoexec.conf.secrets`; this module puts them together into the :class:`Config` a job uses.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from autoexec.conf.configfile import ConfigFile, ConfigValues, read_config_text
from autoexec.conf.secrets import decrypt_config_values
from autoexec.conf.charsets import DEFAULT_CHARSETS, parse_charsets
from autoexec.conf.settings import ConfigError, Settings, autoexec_home, env_name, load_settings

__all__ = ["BUNDLED_PLUGINS", "PACKAGE_DIR", "Config", "ConfigError", "autoexec_home", "load_config", "read_config_text"]

PACKAGE_DIR = Path(__file__).resolve().parent.parent
BUNDLED_PLUGINS = PACKAGE_DIR / "plugins"


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
    # config key -> the setting (``AUTOEXEC_<NAME>``) that overrides it (handy for containers and tests)
    "server.baseurl": "server_baseurl",
    "server.username": "server_username",
    "server.password": "server_password",
    "db.url": "db_url",
    "db.name": "db_name",
    "db.username": "db_username",
    "db.password": "db_password",
    "job.maxExecSecs": "max_exec_secs",
    "rexec.connectTimeout": "connect_timeout",
    "rexec.readTimeout": "read_timeout",
    "rexec.writeTimeout": "write_timeout",
    "plugins.path": "plugins_path",
    "server.verifyTLS": "server_verify_tls",
    "server.caFile": "server_ca_file",
    "output.charsets": "output_charsets",
}


def read_config_values(path: Path, settings: Settings | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """All ``key = value`` pairs of every section (keys case-preserved) plus the ``AUTOEXEC_*``
    overrides, and where each came from (``<file> [<section>]`` or the variable)."""
    values, origin = ConfigFile.read(path).flat()
    settings = settings or load_settings()
    for key, name in _ENV_OVERRIDES.items():
        value = getattr(settings, name)
        if value is not None:
            values[key] = ("1" if value else "0") if isinstance(value, bool) else str(value)
            origin[key] = env_name(name)
    return values, origin


def _charsets(text: str, source: str) -> tuple[str, ...]:
    try:
        return parse_charsets(text)
    except LookupError as exc:
        raise ConfigError(f"{source}: output.charsets: {exc}") from None


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
    settings = load_settings()
    home = home or settings.autoexec_home()
    path = home / "conf" / "config.ini"
    values, origin = read_config_values(path, settings)
    if decrypt:
        values = decrypt_config_values(values, path)
    typed = ConfigValues.parse(values, origin, str(path))
    pool = int(typed.db_max_pool_size)
    return Config(
        home=home,
        path=path,
        server_baseurl=typed.server_baseurl,
        server_username=typed.server_username,
        server_password=typed.server_password,
        password_key=typed.password_key,
        tenant=typed.server_tenant,
        reserve_dir_on_failure=typed.rexec_fail_reservedir,
        max_exec_secs=typed.job_max_exec_secs,
        connect_timeout=typed.rexec_connect_timeout,
        read_timeout=typed.rexec_read_timeout,
        write_timeout=typed.rexec_write_timeout,
        db_url=typed.db_url,
        db_max_pool_size=pool if pool > 0 else 64,
        db_name=typed.db_name,
        db_username=typed.db_username,
        db_password=typed.db_password,
        possible_encodings=typed.deploy_possible_encodings,
        output_charsets=_charsets(typed.output_charsets, origin.get("output.charsets", str(path))),
        plugin_trees=parse_plugin_trees(typed.plugins_path, home, origin.get("plugins.path", str(path))),
        server_verify_tls=(typed.server_ca_file or True) if typed.server_verify_tls else False,
        db_ca_file=typed.db_ca_file,
        db_verify_tls=typed.db_verify_tls,
        raw=values,
    )
