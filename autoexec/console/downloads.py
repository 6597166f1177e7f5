"""Downloads from the console into the job dir and the file cache: params, nodes files, files and scripts.

Every download streams into a temp file in the destination directory and is renamed into place
only once complete and fsync'd. The original truncated the target first, so a failed or cut-off
download left an empty or half file that broke the next run; here the
previous copy (if any) survives every failure.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from pathlib import Path
from collections.abc import Mapping
from typing import IO, Any, Iterator, Protocol

import requests

from autoexec.console.apis import path_of
from autoexec.console.errors import ConsoleDownloadError, ConsoleStatusError, ConsoleUnavailable
from autoexec.console.models import Envelope, FetchedFile, GetParams, Payload, ScriptDownload
from autoexec.models.flags import is_true
from autoexec.models.text import TextProblem, check_tree
from autoexec.ops.tools import EXTENSIONS



class ConsoleClient(Protocol):
    """What the downloads need of the console client (which calls them): a protocol, so this module
    does not import the client back."""

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                stream: bool = False, api: str = "") -> requests.Response: ...

    def envelope(self, resp: requests.Response, *, check: bool = True, api: str = "") -> Envelope: ...

    def call(self, api: str, payload: Payload | Mapping[str, Any], *, check: bool = True) -> Envelope: ...

CHUNK = 64 * 1024
_SAFE_ID = re.compile(r"[0-9A-Za-z_.-]+")


def _safe_id(value: str, what: str) -> str:
    """Ids end up in file names; refuse anything that could leave the directory."""
    if not _SAFE_ID.fullmatch(value) or value in (".", ".."):
        raise ConsoleDownloadError(f"unusable {what} {value!r}")
    return value


def _safe_file_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return base if base not in ("", ".", "..") and "\x00" not in base else "_"


def mtime_or_zero(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0


def script_file_name(name: str, interpreter: str, is_lib: bool) -> str:
    """Script name plus the interpreter's extension unless already present, as the original names them."""
    ext = ".pm" if is_lib and interpreter == "perl" else EXTENSIONS.get(interpreter, "")
    name = _safe_file_name(name)
    return name if not ext or name.endswith(ext) else name + ext


@contextlib.contextmanager
def atomic_file(dest: Path, mode: int = 0o644) -> Iterator[IO[bytes]]:
    """Yield a temp file next to ``dest``; rename over ``dest`` only if the block completes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _stream_to(resp: requests.Response, dest: Path, mode: int, label: str) -> None:
    try:
        with atomic_file(dest, mode) as fh:
            for chunk in resp.iter_content(CHUNK):
                fh.write(chunk)
    except requests.RequestException as exc:
        raise ConsoleUnavailable(f"{label}: download into {dest.name} broke off: "
                                 f"{type(exc).__name__}", api=label) from None
    finally:
        resp.close()


def _not_modified(resp: requests.Response, dest: Path, api: str, missing: str) -> None:
    """A non-200 2xx (204: not modified) keeps the local copy; without one it is an error."""
    resp.close()
    if not dest.exists():
        raise ConsoleDownloadError(f"{api}: console answered {resp.status_code} {missing}", api=api,
                                   status_code=resp.status_code)


@contextlib.contextmanager
def _flocked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def get_params(client: ConsoleClient, job_id: str, dest: Path) -> dict[str, Any]:
    payload = GetParams(job_id=str(job_id), last_modified=mtime_or_zero(dest))
    params = client.call("getParams", payload).return_
    if not isinstance(params, dict):
        raise ConsoleDownloadError(f"getParams: Return is {type(params).__name__}, not an object",
                                   api="getParams")
    try:
        check_tree(params)  # a lone surrogate could not even be written as UTF-8
    except TextProblem as exc:
        raise ConsoleDownloadError(f"getParams: Return field {exc.where}: {exc.problem}", api="getParams") from None
    with atomic_file(dest, 0o600) as fh:
        fh.write(json.dumps(params, indent=4, ensure_ascii=False).encode("utf-8"))
    return params


def get_nodes(client: ConsoleClient, job_id: str, dest: Path, *, node_from: str, phase: str,
              group_no: int | None, runner_id: int, pass_through_env: dict[str, Any]) -> bool:
    query: dict[str, Any] = {"jobId": job_id, "runnerId": runner_id,
                             "passThroughEnv": pass_through_env, "phase": phase, "nodeFrom": node_from}
    if node_from == "group":
        query["groupNo"] = group_no
    query["lastModified"] = mtime_or_zero(dest)
    resp = client.request("GET", path_of("getNodes"), query=query, stream=True, api="getNodes")
    if resp.status_code != 200:
        _not_modified(resp, dest, "getNodes", f"(not modified) but there is no local {dest.name}")
        return False
    _stream_to(resp, dest, 0o600, "getNodes")
    return True


def _file_name_of(resp: requests.Response, fallback: str) -> str:
    disposition = resp.headers.get("Content-Disposition", "")
    marker = 'filename="'
    start = disposition.find(marker)
    if start < 0:
        return fallback
    name = disposition[start + len(marker):].split('"', 1)[0]
    return _safe_file_name(name) if name else fallback


def fetch_file(client: ConsoleClient, file_id: str, cache_dir: Path) -> FetchedFile:
    file_id = _safe_id(file_id, "file id")
    dest = cache_dir / file_id
    with _flocked(cache_dir / f"{file_id}.lock"):
        query = {"id": file_id, "lastModified": mtime_or_zero(dest)}
        resp = client.request("GET", path_of("fetchFile"), query=query, stream=True, api="fetchFile")
        name = _file_name_of(resp, file_id)
        if resp.status_code != 200:
            _not_modified(resp, dest, "fetchFile", f"for file {file_id} but it is not cached")
            return FetchedFile(file_id=file_id, name=name, path=str(dest), downloaded=False)
        _stream_to(resp, dest, 0o644, "fetchFile")
    return FetchedFile(file_id=file_id, name=name, path=str(dest), downloaded=True)


def _script_body(client: ConsoleClient, resp: requests.Response) -> bytes | None:
    """JSON envelope (``Return.script``) or ``None`` meaning "stream the raw body"."""
    if not resp.headers.get("Content-Type", "").startswith("application/json"):
        return None
    try:
        env = client.envelope(resp, api="fetchScript")
    finally:
        resp.close()
    script = env.return_.get("script") if isinstance(env.return_, dict) else None
    if not isinstance(script, str):
        raise ConsoleStatusError("fetchScript: Return.script missing", api="fetchScript")
    return script.encode("utf-8")


def fetch_script(client: ConsoleClient, job_id: str, script_id: str | int, dest_dir: Path, *,
                 operation_id: str | None, version_id: str | int | None, last_modified: float,
                 file_name: str | None) -> ScriptDownload | None:
    query: dict[str, Any] = {"jobId": job_id, "operationId": operation_id, "scriptId": script_id}
    if version_id is not None:
        query["scriptVersionId"] = version_id
    query["acceptStream"] = "True"
    query["lastModified"] = last_modified
    resp = client.request("GET", path_of("fetchScript"), query=query, stream=True, api="fetchScript")
    if resp.status_code != 200:
        resp.close()
        return None
    h = resp.headers
    try:
        ver = _safe_id(h.get("ScriptVersionId", ""), "ScriptVersionId")
        is_lib = is_true(h.get("ScriptIsLib", "0"))
        libs = json.loads(h.get("ScriptUseLibs") or "[]")
        if not isinstance(libs, list):
            raise ValueError("ScriptUseLibs is not a list")
    except (ValueError, ConsoleDownloadError) as exc:
        resp.close()
        raise ConsoleDownloadError(f"fetchScript: bad response headers: {exc}", api="fetchScript") from None
    interpreter = h.get("ScriptInterpreter", "") or ""
    name = h.get("ScriptName") or "none"
    fname = file_name or script_file_name(name, interpreter, is_lib)
    target = dest_dir / f"{ver}.{fname}"
    body = _script_body(client, resp)
    if target.exists():
        resp.close()  # versioned files never change; keep the one a running op may be using
    elif body is not None:
        with atomic_file(target, 0o700) as fh:
            fh.write(body)
    else:
        _stream_to(resp, target, 0o700, "fetchScript")
    lib_ids = [str(x) for x in libs]
    with atomic_file(dest_dir / f"{ver}.{fname}.lib", 0o644) as fh:
        fh.write(",".join(lib_ids).encode("utf-8"))
    return ScriptDownload(script_id=str(h.get("ScriptId") or script_id), name=name, version_id=ver,
                          is_lib=is_lib, use_libs=lib_ids, interpreter=interpreter, path=str(target),
                          file_name=fname)
