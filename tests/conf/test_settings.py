"""The ``AUTOEXEC_*`` settings object, the config.ini model, and the README's settings table."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from autoexec.conf.config import ConfigError, load_config
from autoexec.conf.settings import Settings, SettingsError, default_label, env_name, load_settings, markdown_table, type_label

README = Path(__file__).resolve().parents[2] / "README.md"

# A value of the wrong type (or out of range) for every setting that can have one.
BAD = {
    "home": None, "server_baseurl": None, "server_username": None, "server_password": None, "server_ca_file": None,
    "db_url": None, "db_name": None, "db_username": None, "db_password": None, "plugins_path": None, "output_charsets": None,
    "console_block": None, "mongodb_block": None, "node_credentials_block": None, "ssh_known_hosts": None,
    "server_verify_tls": "maybe", "max_exec_secs": "long", "connect_timeout": "0", "read_timeout": "-5",
    "write_timeout": "1s", "console_retries": "-1", "console_connect_timeout": "ten", "console_read_timeout": "0",
    "outbox_flush_secs": "-1", "tool_console_timeout": "x", "max_parallel": "many", "spawn": "fork",
    "ssh_max_handshakes": "8;32", "echo": "loud", "node_tasks_max": "0", "prefect_wait": "soon",
    "prefect_record": "2", "recorder_idle_secs": "-1", "recorder_api_concurrency": "0", "recorder_nice": "1.5",
    "recorder_verbose": "very", "prefect_start_secs": "0", "prefect_port": "70000", "prefect_server_nice": "x",
    "prefect_watch": "sometimes", "prefect_watch_seconds": "0",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("AUTOEXEC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AUTOEXEC_HOME", str(tmp_path / "home"))


def test_every_setting_has_a_bad_value_case_and_a_description() -> None:
    assert set(BAD) == set(Settings.model_fields)
    assert all(info.description for info in Settings.model_fields.values())


@pytest.mark.parametrize("field", [f for f, v in BAD.items() if v is not None])
def test_a_bad_value_is_one_line_naming_the_variable(field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(env_name(field), str(BAD[field]))
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert message.startswith(f"{env_name(field)}=") and "\n" not in message


def test_defaults_and_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = load_settings()
    assert s.autoexec_home() == (tmp_path / "home").resolve()
    assert (s.max_parallel, s.node_tasks_max, s.console_retries, s.recorder_idle_secs) == (64, 256, 4, 600)
    assert (s.prefect_record, s.echo, s.spawn, s.prefect_port, s.outbox_flush_secs) == (True, False, "posix_spawn", None, None)
    assert s.handshake_limits(32) == (8, 32)
    monkeypatch.setenv("AUTOEXEC_MAX_PARALLEL", "3")
    monkeypatch.setenv("AUTOEXEC_PREFECT_RECORD", "0")
    monkeypatch.setenv("AUTOEXEC_SSH_MAX_HANDSHAKES", "40")
    monkeypatch.setenv("AUTOEXEC_ECHO", "")  # empty counts as unset
    s = load_settings()  # the environment is read at each call
    assert (s.max_parallel, s.prefect_record, s.echo, s.handshake_limits(32)) == (3, False, False, (40, 40))


# A good value for every setting, as text in the environment.
GOOD = {
    "home": "/srv/ae", "server_baseurl": "http://console:8080", "server_username": "u", "server_password": "p",
    "server_verify_tls": "no", "server_ca_file": "/ca.pem", "db_url": "mongodb://m", "db_name": "d", "db_username": "u",
    "db_password": "p", "max_exec_secs": "30", "connect_timeout": "1.5", "read_timeout": "9", "write_timeout": "2",
    "plugins_path": "/p", "output_charsets": "gbk,big5", "console_block": "c", "mongodb_block": "m",
    "node_credentials_block": "n", "console_retries": "0", "console_connect_timeout": "3", "console_read_timeout": "4",
    "outbox_flush_secs": "0", "tool_console_timeout": "5", "max_parallel": "7", "spawn": "popen",
    "ssh_max_handshakes": " 4 , 16 ", "ssh_known_hosts": "/kh", "echo": "true", "node_tasks_max": "9",
    "prefect_wait": "0.5", "prefect_record": "0", "recorder_idle_secs": "0", "recorder_api_concurrency": "3",
    "recorder_nice": "-1", "recorder_verbose": "on", "prefect_start_secs": "60", "prefect_port": "4300",
    "prefect_server_nice": "0", "prefect_watch": "off", "prefect_watch_seconds": "0.2",
}


@pytest.mark.parametrize("count", [0, 1, 5, len(GOOD)])
def test_loading_validates_as_the_whole_model_does(count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """load_settings builds a validator of the set fields only; what it returns must be what the
    whole model's validation gives, field for field, for any number of set variables."""
    assert set(GOOD) == set(Settings.model_fields)
    monkeypatch.delenv("AUTOEXEC_HOME")
    chosen = dict(list(GOOD.items())[:count])
    for field, value in chosen.items():
        monkeypatch.setenv(env_name(field), value)
    loaded = load_settings()
    whole = Settings.model_validate(chosen)
    assert loaded.model_dump() == whole.model_dump()
    assert all(type(getattr(loaded, f)) is type(getattr(whole, f)) for f in chosen)


def test_names_in_any_case_and_undeclared_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read like the environment of a Windows-built export: the name's case does not matter; the
    tool contract's variables (AUTOEXEC_JOBID...) are not settings and never fail the load."""
    monkeypatch.setenv("autoexec_max_parallel", "5")
    monkeypatch.setenv("AUTOEXEC_JOBID", "not-a-setting")
    monkeypatch.setenv("AUTOEXEC_NO_SUCH_THING", "x")
    assert load_settings().max_parallel == 5
    monkeypatch.setenv("Autoexec_Max_Parallel", "many")
    monkeypatch.delenv("autoexec_max_parallel")
    with pytest.raises(SettingsError, match="AUTOEXEC_MAX_PARALLEL="):
        load_settings()


def test_secret_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOEXEC_SERVER_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("AUTOEXEC_MAX_PARALLEL", "x")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "hunter2" not in str(err.value)


def test_cli_exits_2_with_one_line_for_a_bad_variable(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("AUTOEXEC_")}
    env.update(AUTOEXEC_HOME=str(tmp_path / "home"), AUTOEXEC_NODE_TASKS_MAX="lots")
    proc = subprocess.run([sys.executable, "-m", "autoexec.cli.command", "--cleanstatus", "--jobid", "1"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "AUTOEXEC_NODE_TASKS_MAX='lots'" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- config.ini ---------------------------------------------------------------------------------
def _ini(tmp_path: Path, text: str) -> Path:
    conf = tmp_path / "home" / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "config.ini").write_text(text, encoding="utf-8")
    return conf / "config.ini"


@pytest.mark.parametrize("text, key", [
    ("[autoexec]\nrexec.readTimeout = soon\n", "rexec.readTimeout = 'soon' is not a number"),
    ("[autoexec]\njob.maxExecSecs = -3\n", "job.maxExecSecs = '-3' must be positive"),
    ("[autoexec]\ndb.verifyTLS = perhaps\n", "db.verifyTLS = 'perhaps' must be 1 or 0"),
    ("[server]\nserver.baseurl = console:8080\n", "server.baseurl = 'console:8080' must start with http://"),
])
def test_config_error_names_file_section_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = _ini(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config()
    section = text.split("]")[0] + "]"
    assert str(err.value).startswith(f"{path} {section}: {key}"), str(err.value)


def test_config_values_typed_defaults_kept_and_unknown_keys_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _ini(tmp_path, "[server]\nserver.baseurl = http://c/\ntenant = t1\n[autoexec]\nrexec.fail.reservedir = 1\n"
         "db.name =\nlogging.level = DEBUG\ndb.maxPoolSize = 0.5\n")
    cfg = load_config()
    assert (cfg.server_baseurl, cfg.tenant, cfg.reserve_dir_on_failure, cfg.db_name) == ("http://c", "t1", True, "autoexec")
    assert (cfg.connect_timeout, cfg.read_timeout, cfg.db_max_pool_size) == (60, 3600, 64)
    assert cfg.raw["logging.level"] == "DEBUG"
    monkeypatch.setenv("AUTOEXEC_CONNECT_TIMEOUT", "7")
    monkeypatch.setenv("AUTOEXEC_SERVER_BASEURL", "ftp://x")
    with pytest.raises(ConfigError, match=r"^AUTOEXEC_SERVER_BASEURL: server\.baseurl = 'ftp://x' must start"):
        load_config()
    monkeypatch.delenv("AUTOEXEC_SERVER_BASEURL")
    assert load_config().connect_timeout == 7


def test_no_import_cycle_between_config_and_secrets() -> None:
    code = ("import sys; import autoexec.conf.secrets; "
            "assert 'autoexec.conf.config' not in sys.modules, 'secrets imports config'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- README -------------------------------------------------------------------------------------
def _readme_table() -> list[str]:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("| variable | type | default | what |")
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return lines[start:end]


def test_readme_settings_table_matches_the_settings_object() -> None:
    table = _readme_table()
    rows = {line.split("|")[1].strip().strip("`"): [c.strip() for c in line.split("|")[2:4]] for line in table[2:]}
    declared = {env_name(name): [type_label(info), default_label(info)] for name, info in Settings.model_fields.items()}
    assert set(rows) - set(declared) == set(), "in README.md but not declared in autoexec/conf/settings.py"
    assert set(declared) - set(rows) == set(), "declared but missing from README.md: run python -m autoexec.conf.settings"
    assert rows == declared, "type/default columns differ from autoexec/conf/settings.py"
    assert table == markdown_table().splitlines(), "README.md table is stale: paste `python -m autoexec.conf.settings`"


def test_every_autoexec_variable_named_in_the_package_is_declared_or_classified() -> None:
    """A variable named in code (not docstrings) is a setting, part of the tool contract, or one of
    the two others; a new one cannot be parsed ad hoc without showing up here."""
    import ast
    import re

    from autoexec.conf.settings import OTHER_VARIABLES, TOOL_ENVIRONMENT

    package = README.parent / "autoexec"
    declared = {env_name(name) for name in Settings.model_fields}
    known = declared | set(TOOL_ENVIRONMENT) | set(OTHER_VARIABLES)
    unknown: set[str] = set()
    seen: set[str] = set()
    for path in package.rglob("*.py"):
        if "toollib" in path.parts or "plugins" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                for name in re.findall(r"AUTOEXEC_[A-Z][A-Z_]*[A-Z]", node.value):
                    seen.add(name)
                    if name not in known and not any(d.startswith(name + "_") for d in declared):
                        unknown.add(f"{path.relative_to(package)}: {name}")
    assert not unknown
    assert seen >= {"AUTOEXEC_JOBID", "AUTOEXEC_NODE_PASSWORD", "AUTOEXEC_RECORDER_LOCK_FD"}  # the scan does see names
