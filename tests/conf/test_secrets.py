from __future__ import annotations

import binascii
import os
from pathlib import Path

import pytest

from autoexec.conf.config import ConfigError, load_config
from autoexec.conf.secrets import (
    MASTER_KEY,
    SecretError,
    decrypt_config_values,
    decrypt_secret,
    encrypt_config_in_place,
    encrypt_secret,
    is_encrypted,
)


def reference_rc4_hex(key: str, data: bytes) -> str:
    """Independent textbook RC4 (KSA over the key's code points + PRGA) to cross-check the module."""
    box = list(range(256))
    j = 0
    for i in range(256):
        j = (j + box[i] + ord(key[i % len(key)])) % 256
        box[i], box[j] = box[j], box[i]
    i = j = 0
    out = bytearray()
    for byte in data:
        i = (i + 1) % 256
        j = (j + box[i]) % 256
        box[i], box[j] = box[j], box[i]
        out.append(byte ^ box[(box[i] + box[j]) % 256])
    return out.hex()


@pytest.mark.parametrize(
    ("key", "plain", "expected"),
    [
        ("Key", "Plaintext", "bbf316e8d940af0ad3"),
        ("Wiki", "pedia", "1021bf0420"),
        ("Secret", "Attack at dawn", "45a01f645fc35b383552544b9bf5"),
    ],
)
def test_known_vectors(key: str, plain: str, expected: str) -> None:
    assert encrypt_secret(plain, key) == expected
    assert decrypt_secret("{ENCRYPTED}" + expected, key) == plain


def test_matches_reference_ksa_for_master_key() -> None:
    plain = "p@ss w0rd!"
    assert encrypt_secret(plain, MASTER_KEY) == reference_rc4_hex(MASTER_KEY, plain.encode())


@pytest.mark.parametrize("prefix", ["{ENCRYPTED}", "{RC4}", "RC4:"])
def test_all_prefixes_decrypt(prefix: str) -> None:
    value = encrypt_secret("hello", "k3y", prefix)
    assert value.startswith(prefix)
    assert is_encrypted(value)
    assert decrypt_secret(value, "k3y") == "hello"


def test_unmarked_values_are_plaintext() -> None:
    assert not is_encrypted("abcdef")
    assert not is_encrypted(None)
    assert decrypt_secret("abcdef", "k3y") == "abcdef"


def test_utf8_round_trip_is_not_mojibake() -> None:
    value = encrypt_secret("密码-é", "k3y", "{RC4}")
    assert decrypt_secret(value, "k3y") == "密码-é"


def test_latin1_ciphertext_from_original_still_reads() -> None:
    # The original encrypted each code point below 256 as one byte; "é" was 0xE9, invalid UTF-8.
    legacy = "{ENCRYPTED}" + reference_rc4_hex("k3y", "café".encode("latin-1"))
    assert decrypt_secret(legacy, "k3y") == "café"


def test_key_uses_low_byte_of_code_points() -> None:
    assert encrypt_secret("x", chr(0x141)) == reference_rc4_hex(chr(0x141), b"x")


def test_bad_hex_error_hides_value() -> None:
    with pytest.raises(SecretError) as info:
        decrypt_secret("{RC4}zz-secret-zz", "k")
    assert "secret" not in str(info.value)
    with pytest.raises(SecretError):
        encrypt_secret("x", "")


def _config(tmp_path: Path, body: str) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    path = conf / "config.ini"
    path.write_text(body, encoding="utf-8")
    return path


def test_decrypt_config_values_chain(tmp_path: Path) -> None:
    values = {
        "password.key": encrypt_secret("pk", MASTER_KEY, "{ENCRYPTED}"),
        "server.password": encrypt_secret("srv", "pk", "{ENCRYPTED}"),
        "db.password": encrypt_secret("dbp", "pk", "{ENCRYPTED}"),
        "server.username": "autoexec",
    }
    out = decrypt_config_values(values, tmp_path / "config.ini")
    assert out == {"password.key": "pk", "server.password": "srv", "db.password": "dbp",
                   "server.username": "autoexec"}
    assert values["password.key"].startswith("{ENCRYPTED}")  # input not mutated


def test_decrypt_config_values_bad_value_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "config.ini"
    with pytest.raises(ConfigError, match=r"config\.ini: db\.password"):
        decrypt_config_values({"password.key": "pk", "db.password": "{ENCRYPTED}nothex-s3cr3t"}, path)
    with pytest.raises(ConfigError) as info:
        decrypt_config_values({"server.password": "{ENCRYPTED}00"}, path)
    assert "password.key" in str(info.value)


CONFIG = """\
# runner config -- keep me
[server]
server.baseurl = http://console:8282
server.username = autoexec
server.password = srv-secret
password.key=pk-secret
tenant = develop

[autoexec]
; db settings
db.url = mongodb://h1:27017/
db.username : autoexec
db.password : db-secret
"""


def test_encrypt_config_in_place_keeps_layout_and_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for env in ("AUTOEXEC_SERVER_PASSWORD", "AUTOEXEC_DB_PASSWORD"):
        monkeypatch.delenv(env, raising=False)
    path = _config(tmp_path, CONFIG)
    os.chmod(path, 0o600)
    changed = encrypt_config_in_place(path)
    assert sorted(changed) == ["db.password", "password.key", "server.password"]
    text = path.read_text()
    assert "secret" not in text
    assert "# runner config -- keep me" in text and "; db settings" in text
    assert "password.key={ENCRYPTED}" in text and "db.password : {ENCRYPTED}" in text
    assert (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent / "config.ini.lock").exists()
    cfg = load_config(tmp_path)
    assert (cfg.password_key, cfg.server_password, cfg.db_password) == ("pk-secret", "srv-secret", "db-secret")
    assert "secret" not in repr(cfg)
    before = path.read_bytes()
    assert encrypt_config_in_place(path) == []  # idempotent: no rewrite when nothing is plaintext
    assert path.read_bytes() == before


def test_encrypt_config_in_place_uses_existing_encrypted_key(tmp_path: Path) -> None:
    enc_key = encrypt_secret("pk", MASTER_KEY, "{ENCRYPTED}")
    path = _config(tmp_path, f"[server]\npassword.key = {enc_key}\nserver.password = s\n")
    assert encrypt_config_in_place(path) == ["server.password"]
    line = path.read_text().splitlines()[2]
    assert decrypt_secret(line.split(" = ", 1)[1], "pk") == "s"


def test_encrypt_config_without_key_leaves_secrets(tmp_path: Path) -> None:
    path = _config(tmp_path, "[server]\nserver.password = s\n[autoexec]\ndb.password =\n")
    assert encrypt_config_in_place(path) == []
    assert encrypt_config_in_place(tmp_path / "missing.ini") == []


def test_hex_helper_is_lowercase_hex() -> None:
    value = encrypt_secret("abc", "key")
    binascii.unhexlify(value)
    assert value == value.lower()


def test_pycryptodome_loads_only_when_something_is_decrypted() -> None:
    """Loading it is a noticeable part of a CLI start; a job with no encrypted value never needs it."""
    import subprocess
    import sys

    check = ("import sys\n"
             "import autoexec.cli.command, autoexec.load.loader, autoexec.conf.secrets\n"
             "print('Crypto' in sys.modules)\n"
             "from autoexec.conf.rc4 import rc4\n"
             "print(rc4(b'Key', b'Plaintext').hex(), 'Crypto' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["False", "bbf316e8d940af0ad3 True"]
