"""TLS to the console (and to MongoDB) is verified by default, whatever REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE say;
config.ini names a CA file or turns checking off explicitly; a refusal says why in one line.
A real HTTPS server on 127.0.0.1 with a self-signed certificate made here by ``openssl``."""
from __future__ import annotations

import http.server
import json
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoexec.conf.config import load_config
from autoexec.console.errors import ConsoleTLSError
from autoexec.load.production import console_client

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _cert(tmp: Path, name: str, san: str) -> tuple[Path, Path]:
    cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName={san}"], check=True, capture_output=True, timeout=60)
    return cert, key


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"Status": "OK", "Return": {"host": "db.example:27017"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(cert: Path, key: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ip_cert(tmp_path: Path) -> tuple[Path, Path]:
    return _cert(tmp_path, "console-ip", "IP:127.0.0.1")


@pytest.fixture
def console(ip_cert: tuple[Path, Path]) -> Iterator[str]:
    yield from _serve(*ip_cert)


def _client(home: Path, url: str, extra: str = "") -> object:
    conf = home / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "config.ini").write_text(f"[server]\nserver.baseurl = {url}\nserver.username = ak\n"
                                     f"server.password = tok\n{extra}")
    return console_client(load_config(home))


def test_self_signed_console_is_refused_even_if_the_environment_trusts_it(
        tmp_path: Path, console: str, ip_cert: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ip_cert[0]))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(ip_cert[0]))
    client = _client(tmp_path, console)
    with pytest.raises(ConsoleTLSError) as exc:
        client.get_mongodb_conf()  # type: ignore[attr-defined]
    text = str(exc.value)
    assert "certificate verify failed: self-signed certificate" in text and "for host 127.0.0.1" in text
    assert "server.caFile" in text and "server.verifyTLS = 0" in text and len(text.splitlines()) == 1
    assert not exc.value.retryable


def test_ca_file_in_config_is_trusted(tmp_path: Path, console: str, ip_cert: tuple[Path, Path]) -> None:
    client = _client(tmp_path, console, f"server.caFile = {ip_cert[0]}\n")
    assert client.get_mongodb_conf().host == "db.example:27017"  # type: ignore[attr-defined]


def test_verification_turned_off_explicitly(tmp_path: Path, console: str) -> None:
    client = _client(tmp_path, console, "server.verifyTLS = 0\n")
    assert client.get_mongodb_conf().host == "db.example:27017"  # type: ignore[attr-defined]


def test_certificate_for_another_name_is_refused_with_its_cause(tmp_path: Path) -> None:
    cert, key = _cert(tmp_path, "other.example", "DNS:other.example")
    for url in _serve(cert, key):
        client = _client(tmp_path, url, f"server.caFile = {cert}\n")
        with pytest.raises(ConsoleTLSError, match=r"certificate verify failed for host 127\.0\.0\.1: .*(mismatch|not valid)"):
            client.get_mongodb_conf()  # type: ignore[attr-defined]


# --- MongoDB with TLS: pymongo checks the certificate unless db.verifyTLS = 0 -------------------------
def _mongo_error(url: str, home: Path, extra: str) -> str:
    from autoexec.jobdir.mongo import MongoStore

    conf = home / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "config.ini").write_text(f"[db]\ndb.url = {url}\n{extra}")
    store = MongoStore.from_config(load_config(home), timeout_ms=1500)
    try:
        store._client.admin.command("ping")
    except Exception as exc:  # noqa: BLE001 - the TLS server below is not a MongoDB: every ping fails
        return str(exc)
    finally:
        store.close(timeout=1)
    return ""


def test_mongodb_tls_is_verified_unless_turned_off(tmp_path: Path, console: str, ip_cert: tuple[Path, Path]) -> None:
    url = "mongodb://" + console.split("://", 1)[1] + "/?tls=true&directConnection=true"
    assert "certificate verify failed" in _mongo_error(url, tmp_path, "")
    assert "certificate verify failed" not in _mongo_error(url, tmp_path, f"db.caFile = {ip_cert[0]}\n")
    assert "certificate verify failed" not in _mongo_error(url, tmp_path, "db.verifyTLS = 0\n")


def test_tool_console_calls_check_the_certificate_as_the_runner_does(tmp_path: Path, console: str,
                                                                       ip_cert: tuple[Path, Path]) -> None:
    """Tools reach the console through the tool library's ServerAdapter: the same config.ini keys
    decide whether a self-signed console is refused, trusted through its CA file, or not checked."""
    from autoexec.ops.toolenv import CORE_LIB_DIRS

    code = ("import AutoExecUtils\ntry:\n    AutoExecUtils._serverAdapter().getMongoDBConf()\n"
            "    print(AutoExecUtils.getAutoexecContext().config['autoexec']['db.url'])\n"
            "except Exception as exc:\n    print('refused:', exc)\n")
    for extra, expect in (("", "CERTIFICATE_VERIFY_FAILED"), (f"server.caFile = {ip_cert[0]}\n", "db.example"),
                          ("server.verifyTLS = 0\n", "db.example")):
        (tmp_path / "conf").mkdir(exist_ok=True)
        (tmp_path / "conf" / "config.ini").write_text(f"[server]\nserver.baseurl = {console}\nserver.username = ak\n"
                                                      f"server.password = tok\n{extra}")
        env = {"PATH": "/usr/bin:/bin", "AUTOEXEC_HOME": str(tmp_path),
               "PYTHONPATH": ":".join(str(d) for d in CORE_LIB_DIRS)}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert expect in out.stdout, (extra, out.stdout, out.stderr)
