"""RC4 secrets as the neatlogic console, config.ini and existing tools encode them.

The wire format is fixed by the other side (hex of RC4, keyed by the key text's code points,
behind a marker prefix). UTF-8 in, UTF-8 out where valid, latin-1 otherwise, so old ciphertexts
still read. Errors name the config file and key, never the value."""
from __future__ import annotations

import binascii
import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import unquote, urlsplit

from autoexec.conf.configfile import read_config_text
from autoexec.conf.errors import AutoexecError
from autoexec.conf.rc4 import rc4
from autoexec.conf.settings import ConfigError

#: Built-in key that protects ``password.key`` in config.ini; shared with the console and tools.
MASTER_KEY: Final[str] = "c3H002LGZRrseEPck9tsNgfXHJcl0USJ"

#: The marker of encrypted config.ini values (and of the console's answers).
CONFIG_PREFIX: Final[str] = "{ENCRYPTED}"
#: The marker of encrypted job options: only these are decrypted into a tool's environment.
OPTION_PREFIX: Final[str] = "{RC4}"
#: Every marker in use (node passwords and password options accept all). The one definition in the
#: package; the stand-alone tool library (``autoexec/toollib/``, ``plugins/local/lib``) keeps its own
#: copy because it runs under other Pythons without this package.
ENCRYPTED_PREFIXES: Final[tuple[str, ...]] = (CONFIG_PREFIX, OPTION_PREFIX, "RC4:")

#: Config keys that must not stay in plaintext, in the order they depend on each other.
CONFIG_SECRET_KEYS: Final[tuple[str, ...]] = ("password.key", "server.password", "db.password")


class SecretError(AutoexecError, ValueError):
    """A value that cannot be decrypted; the message never contains the value."""


def _key_bytes(key: str) -> bytes:
    """The original KSA adds ``ord(char)`` modulo 256, so only the low byte of each code point counts."""
    if not key:
        raise SecretError("RC4 key is empty")
    return bytes(ord(ch) & 0xFF for ch in key)


def split_marker(value: str) -> tuple[str, str] | None:
    """``(marker, ciphertext)`` of a marked value, ``None`` for plaintext."""
    for prefix in ENCRYPTED_PREFIXES:
        if value.startswith(prefix):
            return prefix, value[len(prefix):]
    return None


def is_encrypted(value: object) -> bool:
    """True for a string carrying one of the known markers (``{ENCRYPTED}``, ``{RC4}``, ``RC4:``)."""
    return isinstance(value, str) and split_marker(value) is not None


def encrypt_secret(plain: str, key: str, prefix: str = "") -> str:
    """Hex of RC4(UTF-8 plaintext); ``prefix`` (e.g. ``{ENCRYPTED}``) is prepended when given."""
    cipher = rc4(_key_bytes(key), plain.encode("utf-8"))
    return prefix + binascii.hexlify(cipher).decode("ascii")


def decrypt_hex(hex_text: str, key: str) -> str:
    """Decrypt bare hex (no marker)."""
    try:
        cipher = binascii.unhexlify(hex_text.strip())
    except (binascii.Error, ValueError):
        raise SecretError("encrypted value is not valid hex") from None
    plain = rc4(_key_bytes(key), cipher)
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        return plain.decode("latin-1")


def decrypt_secret(value: str, key: str) -> str:
    """Decrypt a marked value; unmarked values are plaintext already and come back unchanged."""
    split = split_marker(value)
    if split is None:
        return value
    return decrypt_hex(split[1], key)


def _decrypt_config_value(value: str, key: str, name: str, path: Path) -> str:
    try:
        return decrypt_secret(value, key)
    except SecretError as exc:
        raise ConfigError(f"{path}: {name}: cannot decrypt ({exc})") from None


def decrypt_config_values(values: dict[str, str], path: Path) -> dict[str, str]:
    """Decrypt ``password.key`` with :data:`MASTER_KEY`, then the other secrets with it.

    Plaintext values pass through (they are encrypted later by :func:`encrypt_config_in_place`).
    """
    out = dict(values)
    pass_key = out.get("password.key", "")
    if pass_key:
        pass_key = _decrypt_config_value(pass_key, MASTER_KEY, "password.key", path)
        out["password.key"] = pass_key
    for name in CONFIG_SECRET_KEYS[1:]:
        value = out.get(name, "")
        if not is_encrypted(value):
            continue
        if not pass_key:
            raise ConfigError(f"{path}: {name} is encrypted but password.key is missing")
        out[name] = _decrypt_config_value(value, pass_key, name, path)
    return out


# ``key = value`` / ``key: value`` as configparser reads them; group 3 is the value (may be empty).
_LINE = re.compile(r"^(\s*)([^=:\s][^=:]*?)(\s*[=:]\s*)(.*?)(\s*)$")


def _parse_line(line: str) -> tuple[str, str, str, str, str] | None:
    stripped = line.lstrip()
    if not stripped or stripped[0] in "#;[":
        return None
    match = _LINE.match(line)
    if match is None:
        return None
    return match.group(1), match.group(2), match.group(3), match.group(4), match.group(5)


def _encrypted_lines(lines: list[str], path: Path) -> tuple[list[str], list[str]]:
    """Return the new lines and which keys were encrypted (a key may appear in several sections)."""
    pass_key = ""
    for line in lines:
        parsed = _parse_line(line.rstrip("\r\n"))
        if parsed and parsed[1] == "password.key" and parsed[3]:
            pass_key = _decrypt_config_value(parsed[3], MASTER_KEY, "password.key", path)
    changed: list[str] = []
    out: list[str] = []
    for line in lines:
        body = line.rstrip("\r\n")
        ending = line[len(body):]
        parsed = _parse_line(body)
        if parsed is None or parsed[1] not in CONFIG_SECRET_KEYS or not parsed[3] or is_encrypted(parsed[3]):
            out.append(line)
            continue
        indent, name, delim, value, trail = parsed
        key = MASTER_KEY if name == "password.key" else pass_key
        if not key:
            out.append(line)  # nothing to encrypt with; load_config still works with plaintext
            continue
        out.append(f"{indent}{name}{delim}{encrypt_secret(value, key, CONFIG_PREFIX)}{trail}{ending}")
        changed.append(name)
    return out, changed


def encrypt_config_in_place(path: Path) -> list[str]:
    """Replace plaintext secrets in config.ini by ``{ENCRYPTED}<hex>``; return the keys rewritten.

    Lines are edited one by one so comments and layout survive (the original lost them via
    configparser), and the file is only rewritten when something changed. An exclusive ``flock`` on
    ``config.ini.lock`` serialises concurrent runners; the write is atomic (tmp + rename).
    """
    path = Path(path)
    if not path.exists():
        return []
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            text = read_config_text(path)
            lines, changed = _encrypted_lines(text.splitlines(keepends=True), path)
            if not changed:
                return []
            mode = path.stat().st_mode & 0o7777
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write("".join(lines))
                os.chmod(tmp, mode)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return changed
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --- what a job knows that must never be shown (fed to autoexec.conf.masking.Masker) -------------------
def _decrypted(value: str, decrypt: Callable[[str], str]) -> list[str]:
    """The marked value itself and, when it can be decrypted, its plaintext."""
    try:
        return [value, decrypt(value)]
    except Exception:  # noqa: BLE001 - a value we cannot decrypt is masked as it is
        return [value]


class _ConfigSecrets(Protocol):
    """What :func:`config_secrets` reads of an :class:`autoexec.conf.config.Config` (typed structurally:
    the config module imports this one, not the other way round)."""

    @property
    def server_password(self) -> str: ...
    @property
    def db_password(self) -> str: ...
    @property
    def password_key(self) -> str: ...
    @property
    def db_url(self) -> str: ...


def config_secrets(cfg: _ConfigSecrets) -> list[str]:
    """Console token, MongoDB password (and the URL's own ``user:password@``), the RC4 key."""
    found = [cfg.server_password, cfg.db_password, cfg.password_key]
    userinfo = urlsplit(cfg.db_url).password if "@" in cfg.db_url else None
    if userinfo:
        found += [userinfo, unquote(userinfo)]
    return [s for s in found if s]


def params_secrets(data: Any, decrypt: Callable[[str], str]) -> list[str]:
    """Every ``{RC4}``/``{ENCRYPTED}``/``RC4:`` value anywhere in params (and its plaintext), and
    the literal values of options declared ``password`` in an op's ``desc``. Iterative walk."""
    found: list[str] = []
    stack: list[Any] = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if is_encrypted(value):
                found += _decrypted(value, decrypt)
        elif isinstance(value, dict):
            desc = value.get("desc")
            opt = value.get("opt")
            if isinstance(desc, dict) and isinstance(opt, dict):
                for key, typ in desc.items():
                    raw = opt.get(key)
                    if str(typ).lower() == "password" and isinstance(raw, str) and not raw.startswith("${"):
                        found += _decrypted(raw, decrypt)
            arg = value.get("arg")
            if isinstance(arg, list):
                found += [a["value"] for a in arg if isinstance(a, dict) and str(a.get("type")).lower() == "password"
                          and isinstance(a.get("value"), str)]
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


def node_secrets(nodes: Iterable[Any], decrypt: Callable[[str], str]) -> list[str]:
    """Node passwords as the nodes file gives them, decrypted, and private keys."""
    found: list[str] = []
    for node in nodes:
        password = getattr(node, "password", "") or ""
        if password:
            found += _decrypted(password, decrypt) if is_encrypted(password) else [password]
        key = (getattr(node, "model_extra", None) or {}).get("privateKey")
        if isinstance(key, str):
            found.append(key)
    return found
