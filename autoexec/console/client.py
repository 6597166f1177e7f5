"""HTTP client of the neatlogic console: signed requests, response envelopes, the job lifecycle calls.

One ``requests.Session`` per client (connection reuse across the many status callbacks), explicit
``(connect, read)`` timeouts (the original had none and could hang a job forever on a stalled
console), and every failure turned into a :mod:`autoexec.console.errors` type so callers can tell
"console down, retry" from "console said no".
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlsplit

import requests
from requests.utils import DEFAULT_CA_BUNDLE_PATH

from autoexec.console import downloads
from autoexec.console.apis import path_of
from autoexec.console.errors import (AUTH_CODES, ConsoleAuthError, ConsoleError, ConsoleHTTPError,
                                     ConsoleStatusError, ConsoleTLSError, ConsoleUnavailable)
from autoexec.console.models import (CleanNativeTools, Envelope, FetchedFile, GetAccount, MongoDBConf,
                                     Payload, ScriptDownload)
from autoexec.console.plugin_api import PluginCalls
from autoexec.console.signing import api_uri, auth_headers, encode_body

if TYPE_CHECKING:
    from autoexec.conf.config import Config

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def _wire(payload: Payload | Mapping[str, Any]) -> dict[str, Any]:
    return payload.wire() if isinstance(payload, Payload) else dict(payload)


def tls_failure(exc: BaseException, base_url: str) -> str:
    """One line with what the TLS layer said and the config keys that change the outcome."""
    text = str(exc)
    found = re.search(r"certificate verify failed: (.+?)\.? \(_ssl", text) or \
        re.search(r"certificate verify failed: ([^(\\]+)", text)
    host = urlsplit(base_url).hostname or base_url
    if found:
        cause = found.group(1).strip().rstrip(".")
        if "mismatch" in cause or "not valid for" in cause:
            return (f"TLS: certificate verify failed for host {host}: {cause}; server.baseurl must use a name "
                    f"the certificate carries (or server.verifyTLS = 0 in config.ini turns checking off)")
        return (f"TLS: certificate verify failed: {cause} for host {host}; trust its CA with "
                f"server.caFile = <CA bundle file> in config.ini, or turn checking off with server.verifyTLS = 0")
    reason = re.search(r"\[SSL: [A-Z_]+\] ([^(')\\]+)", text)
    cause = reason.group(1).strip() if reason else type(exc).__name__
    return f"TLS handshake with {host} failed: {cause} (server.caFile / server.verifyTLS in config.ini)"


def _message_of(resp: requests.Response) -> str:
    """The console's ``Message`` if the body is its JSON error shape, else a short status text."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("Message"):
        return str(body["Message"])
    return f"HTTP {resp.status_code} {resp.reason or ''}".strip()


class ConsoleClient(PluginCalls):
    """Signed calls to one console as one API user.

    ``tenant`` is a plain attribute because the effective tenant is only known once params.json
    is loaded (it overrides passthrough/env); the engine updates it then.
    """

    def __init__(self, base_url: str, username: str, token: str, *, tenant: str = "none",
                 connect_timeout: float = 10.0, read_timeout: float = 60.0,
                 verify_tls: bool | str = True, session: requests.Session | None = None) -> None:
        if not base_url:
            raise ConsoleError("console base URL is not configured (server.baseurl)")
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._token = token
        self.tenant = tenant or "none"
        self.timeout = (connect_timeout, read_timeout)
        self._session = session or requests.Session()
        # Explicit on every request: with ``verify=True`` requests would let REQUESTS_CA_BUNDLE /
        # CURL_CA_BUNDLE from the environment choose the trusted CAs (or an empty bundle) instead.
        self._verify: bool | str = DEFAULT_CA_BUNDLE_PATH if verify_tls is True else verify_tls
        self._session.verify = self._verify
        if verify_tls is False:
            # Turned off explicitly (server.verifyTLS = 0): no warning on every callback.
            from urllib3.exceptions import InsecureRequestWarning

            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
        self._file_memo: dict[tuple[str, str], FetchedFile] = {}

    @classmethod
    def from_config(cls, cfg: Config, *, tenant: str | None = None, **kwargs: Any) -> ConsoleClient:
        return cls(cfg.server_baseurl, cfg.server_username, cfg.server_password,
                   tenant=tenant or cfg.tenant or "none", **kwargs)

    @property
    def token(self) -> str:
        """The HMAC secret (for the job's masker; never logged)."""
        return self._token

    def __repr__(self) -> str:
        return f"ConsoleClient(base_url={self.base_url!r}, username={self.username!r}, tenant={self.tenant!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ConsoleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------
    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                payload: Any = None, tenant: str | None = None, user: str | None = None,
                token: str | None = None, stream: bool = False, files: Any = None,
                api: str = "") -> requests.Response:
        """Send one signed request; return the 2xx response or raise a typed error.

        The URL is built from the exact URI that was signed (query included) so that nothing
        between here and the socket can re-encode it differently.
        """
        uri = api_uri(path, query if method == "GET" else None)
        body = encode_body(payload) if payload is not None else None
        user = user if user is not None else self.username
        headers = auth_headers(user, token if token is not None else self._token,
                               tenant or self.tenant, uri, body)
        if body is not None:
            headers["Content-Type"] = JSON_CONTENT_TYPE
        label = api or uri.split("?", 1)[0]
        try:
            resp = self._session.request(method, self.base_url + uri, data=body, headers=headers,
                                         files=files, timeout=self.timeout, stream=stream,
                                         allow_redirects=False, verify=self._verify)
        except requests.exceptions.SSLError as exc:
            raise ConsoleTLSError(f"{label}: {tls_failure(exc, self.base_url)}", api=label) from None
        except requests.RequestException as exc:
            raise ConsoleUnavailable(f"{label}: console {self.base_url} unreachable: "
                                     f"{type(exc).__name__}", api=label) from None
        if 200 <= resp.status_code < 300:
            return resp
        try:
            message = _message_of(resp)
        finally:
            resp.close()
        kind = ConsoleAuthError if resp.status_code in AUTH_CODES else ConsoleHTTPError
        raise kind(f"{label}: HTTP {resp.status_code}: {message}", api=label,
                   status_code=resp.status_code)

    def envelope(self, resp: requests.Response, *, check: bool = True, api: str = "") -> Envelope:
        label = api or resp.request.path_url.split("?", 1)[0]
        try:
            data = json.loads(resp.content.decode(resp.encoding or "utf-8", errors="replace"))
            env = Envelope.model_validate(data)
        except (ValueError, TypeError, RecursionError) as exc:
            raise ConsoleStatusError(f"{label}: response is not the console's JSON envelope "
                                     f"({type(exc).__name__})", api=label,
                                     status_code=resp.status_code) from None
        if check and not env.ok:
            raise ConsoleStatusError(f"{label}: Status {env.status or '?'}: {env.message or ''}".rstrip(),
                                     api=label, status_code=resp.status_code)
        return env

    def post_json(self, path: str, payload: Payload | Mapping[str, Any], *, check: bool = True,
                  tenant: str | None = None, user: str | None = None, token: str | None = None,
                  api: str = "") -> Envelope:
        resp = self.request("POST", path, payload=_wire(payload), tenant=tenant, user=user,
                            token=token, api=api)
        return self.envelope(resp, check=check, api=api)

    def get_json(self, path: str, query: Mapping[str, Any] | None = None, *, check: bool = True,
                 api: str = "") -> Envelope:
        return self.envelope(self.request("GET", path, query=query, api=api), check=check, api=api)

    def call(self, api: str, payload: Payload | Mapping[str, Any], *, check: bool = True,
             tenant: str | None = None, user: str | None = None, token: str | None = None) -> Envelope:
        """POST a JSON call by API name (the outbox replays entries through this)."""
        return self.post_json(path_of(api), payload, check=check, tenant=tenant, user=user,
                              token=token, api=api)

    # -- downloads --------------------------------------------------------------------------------
    def get_mongodb_conf(self) -> MongoDBConf:
        env = self.get_json(path_of("getMongoDBConf"), api="getMongoDBConf")
        return MongoDBConf.model_validate(env.return_)

    def get_params(self, job_id: str, dest: Path) -> dict[str, Any]:
        """Download params.json to ``dest`` (the file path) and return it."""
        return downloads.get_params(self, job_id, Path(dest))

    def get_nodes(self, job_id: str, dest: Path, node_from: str = "job", phase: str = "",
                  group_no: int | None = None, runner_id: int = 1,
                  pass_through_env: Mapping[str, Any] | None = None) -> bool:
        """Refresh the nodes file ``dest``; ``False`` when the console said 204 (kept as is)."""
        return downloads.get_nodes(self, job_id, Path(dest), node_from=node_from, phase=phase,
                                   group_no=group_no, runner_id=runner_id,
                                   pass_through_env=dict(pass_through_env or {}))

    def fetch_script(self, job_id: str, script_id: str | int, dest_dir: Path, *,
                     operation_id: str | None = None, version_id: str | int | None = None,
                     last_modified: float = 0.0, file_name: str | None = None) -> ScriptDownload | None:
        """Store a custom script as ``<dest_dir>/<versionId>.<fileName>``; ``None`` = not modified."""
        return downloads.fetch_script(self, job_id, script_id, Path(dest_dir),
                                      operation_id=operation_id, version_id=version_id,
                                      last_modified=last_modified, file_name=file_name)

    def fetch_file(self, file_id: str | int, cache_dir: Path) -> FetchedFile:
        key = (str(Path(cache_dir)), str(file_id))
        if key not in self._file_memo:
            self._file_memo[key] = downloads.fetch_file(self, str(file_id), Path(cache_dir))
        return self._file_memo[key]

    def get_account(self, job_id: str, resource_id: int | str | None, host: str,
                    port: int | str | None, username: str | None, account_id: int | str | None,
                    protocol: str | None) -> Any:
        """The account's password as the console returns it (maybe ``{ENCRYPTED}``; caller decrypts)."""
        payload = GetAccount(job_id=job_id, resource_id=resource_id, host=host, port=port,
                             username=username, account_id=account_id, protocol=protocol)
        return self.call("getAccount", payload).return_

    # -- JSON calls that are not queued callbacks --------------------------------------------------
    def register_tool(self, descriptor: Mapping[str, Any], *, tenant: str | None = None) -> Envelope:
        return self.call("registerTool", descriptor, tenant=tenant)

    def clean_native_tools(self, import_time: int, *, tenant: str | None = None) -> Envelope:
        return self.call("cleanNativeTools", CleanNativeTools(import_time=import_time), tenant=tenant)

    def global_lock(self, lock_params: Mapping[str, Any]) -> Any:
        return self.call("globalLock", lock_params).return_

    def get_deploy_id_path(self, sys_name: str, module_name: str, env_name: str | None = None) -> Any:
        payload: dict[str, Any] = {"sysName": sys_name, "moduleName": module_name}
        if env_name:
            payload["envName"] = env_name
        payload["tenant"] = self.tenant
        return self.call("getDeployIdPath", payload).return_

    def get_deploy_runner_group(self, sys_id: Any, module_id: Any, env_id: Any) -> Any:
        payload = {"sysId": sys_id, "moduleId": module_id, "envId": env_id, "tenant": self.tenant}
        return self.call("getDeployRunnerGroup", payload).return_
