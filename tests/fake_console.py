"""A real HTTP server playing the neatlogic console for tests: signed requests, the job lifecycle and tool APIs.

It checks every request's HMAC signature the way the console does (over the raw request URI and
body bytes, so client-side encoding mistakes surface), serves what the test configured, records
every accepted call, and can be switched at runtime between ``up``, ``down`` (listener closed:
connection refused), ``5xx`` and ``522`` to exercise retry paths.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from autoexec.console.apis import PATHS
from autoexec.console.signing import verify

TOKEN = "499922b4317c251c2ce525f7b83e3d94"
USER = "autoexec"
_API_BY_PATH = {path: api for api, path in reversed(list(PATHS.items()))}


@dataclass
class Recorded:
    method: str
    path: str
    api: str
    query: dict[str, str]
    body: Any
    tenant: str
    time: float = field(default_factory=time.time)
    raw: bytes = b""
    """The request body as received when it is not JSON (multipart uploads)."""


@dataclass
class Script:
    content: bytes
    version_id: str
    name: str
    interpreter: str = "bash"
    is_lib: bool = False
    use_libs: tuple[str, ...] = ()
    as_json: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class FakeConsole:
    def __init__(self, users: dict[str, str] | None = None, host: str = "127.0.0.1") -> None:
        self.users = dict(users or {USER: TOKEN})
        self.host, self.port = host, 0
        self.mode, self.error_code = "up", 500
        self.break_downloads = False  # announce more bytes than sent, then hang up
        self.params: dict[str, Any] = {}
        self.nodes: dict[tuple[str, str, str, str], tuple[bytes, float]] = {}
        self.files: dict[str, tuple[str, bytes, float]] = {}
        self.scripts: dict[str, Script] = {}
        self.mongodb: dict[str, Any] = {}
        self.responses: dict[str, Any] = {"updateNodeStatus": {"hasFailNode": 0}}
        self.log: list[Recorded] = []
        self.attempts: list[Recorded] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeConsole:
        self._server = _Server((self.host, self.port), _handler_for(self))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-console", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def set_mode(self, mode: str, code: int = 500) -> None:
        if mode not in ("up", "down", "5xx", "522"):
            raise ValueError(mode)
        self.error_code = code
        if mode == "down" and self._server is not None:
            self.stop()
        if mode != "down" and self._server is None:
            self.start()
        self.mode = mode

    # -- configuration helpers --------------------------------------------------------------------------
    def set_nodes(self, job_id: str, content: bytes | str, node_from: str = "job", phase: str = "",
                  group_no: int | None = None, modified: float | None = None) -> None:
        data = content.encode() if isinstance(content, str) else content
        key = (str(job_id), node_from, phase, "" if group_no is None else str(group_no))
        self.nodes[key] = (data, time.time() if modified is None else modified)

    def set_file(self, file_id: str, name: str, content: bytes, modified: float | None = None) -> None:
        self.files[str(file_id)] = (name, content, time.time() if modified is None else modified)

    def callbacks(self, api: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.log if r.method == "POST" and (api is None or r.api == api)]


def _handler_for(fake: FakeConsole) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: "down" really refuses

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def _json(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _ok(self, ret: Any) -> None:
            self._json(200, {"Status": "OK", "Return": ret, "TimeCost": 1})

        def _bytes(self, data: bytes, headers: dict[str, str]) -> None:
            self.send_response(200)
            announced = len(data) + (100 if fake.break_downloads else 0)
            self.send_header("Content-Length", str(announced))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data[: len(data) // 2] if fake.break_downloads else data)
            self.close_connection = True

        def _empty(self, code: int, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()

        def _handle(self, method: str) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = urlsplit(self.path)
            api = _API_BY_PATH.get(parts.path, "")
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            multipart = self.headers.get("Content-Type", "").startswith("multipart/")
            try:
                body = json.loads(raw) if raw and not multipart else None
            except ValueError:
                body = None
            rec = Recorded(method, parts.path, api, query, body, self.headers.get("Tenant", ""),
                           raw=raw if multipart else b"")
            with fake._lock:
                fake.attempts.append(rec)
            if fake.mode == "5xx":
                return self._json(fake.error_code, {"Status": "ERROR", "Message": "fake console: internal error"})
            if fake.mode == "522":
                return self._json(522, {"Status": "FAILED", "Message": "fake console: authentication failed"})
            if not self.headers.get("Tenant"):
                return self._json(521, {"Status": "FAILED", "Message": "tenant missing"})
            user = self.headers.get("x-access-key", "")
            token = fake.users.get(user)
            signed_body = None if multipart else raw
            if token is None or not verify(user, token, self.path, signed_body, self.headers.get("Authorization", "")):
                return self._json(522, {"Status": "FAILED", "Message": f"user {user} authentication failed"})
            with fake._lock:
                fake.log.append(rec)
            self._route(api, method, query, body)

        def _route(self, api: str, method: str, query: dict[str, str], body: Any) -> None:
            if api == "getMongoDBConf":
                return self._ok(fake.mongodb)
            if api == "getParams":
                params = fake.params.get(str(body.get("jobId")))
                if params is None:
                    return self._json(200, {"Status": "ERROR", "Message": f"job {body.get('jobId')} not found"})
                return self._ok(params)
            if api == "getNodes":
                key = (query.get("jobId", ""), query.get("nodeFrom", ""), query.get("phase", ""),
                       query.get("groupNo", ""))
                if key not in fake.nodes:
                    return self._json(520, {"Status": "ERROR", "Message": f"no nodes for {key}"})
                data, modified = fake.nodes[key]
                if float(query.get("lastModified") or 0) >= modified:
                    return self._empty(204)
                return self._bytes(data, {"Content-Type": "application/octet-stream"})
            if api == "fetchFile":
                if query.get("id") not in fake.files:
                    return self._json(520, {"Status": "ERROR", "Message": "file not found"})
                name, data, modified = fake.files[query["id"]]
                disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
                if float(query.get("lastModified") or 0) >= modified:
                    return self._empty(204, disposition)
                return self._bytes(data, dict(disposition, **{"Content-Type": "application/octet-stream"}))
            if api == "fetchScript":
                return self._script(query)
            handler = fake.responses.get(api, {})
            ret = handler(body) if callable(handler) else handler
            if isinstance(ret, tuple):  # (http code, envelope) for tests that need a refusal
                return self._json(ret[0], ret[1])
            return self._ok(ret)

        def _script(self, query: dict[str, str]) -> None:
            script = fake.scripts.get(query.get("scriptId", ""))
            if script is None:
                return self._json(520, {"Status": "ERROR", "Message": "script not found"})
            if query.get("scriptVersionId") == script.version_id:
                return self._empty(204)
            headers = {"ScriptId": query["scriptId"], "ScriptName": script.name,
                       "ScriptVersionId": script.version_id, "ScriptIsLib": "1" if script.is_lib else "0",
                       "ScriptUseLibs": json.dumps(list(script.use_libs)),
                       "ScriptInterpreter": script.interpreter}
            if script.as_json:
                return self._json(200, {"Status": "OK", "Return": {"script": script.content.decode()}}, headers)
            return self._bytes(script.content, dict(headers, **{"Content-Type": "application/octet-stream"}))

    return Handler
