"""The few Prefect REST calls the record needs, retried until they land.

Why not Prefect's client: the recorder serves every job of a machine for hours and must never
lose a record to a busy server (the embedded SQLite server answers 503 under fan-out) or to a
server that is down for a while; and importing Prefect would more than double its size. So: plain
``httpx`` (a Prefect dependency), and every call that fails for a transient reason (no
connection, timeout, 408/429/5xx) is repeated with capped exponential backoff until it lands or
the caller stops. A 4xx answer is a refusal, raised as :class:`ApiRefused`.
"""
from __future__ import annotations

import base64
import os
import threading
from datetime import datetime, timezone
from typing import Any, Callable

import httpx

from autoexec.conf.errors import AutoexecError
from autoexec.conf.retry import Backoff, RetryCancelled, retry

TRANSIENT = frozenset({408, 425, 429})


class ApiRefused(AutoexecError):
    """The server understood the call and said no; retrying would not help."""


class _Transient(AutoexecError):
    """An answer (or no answer) worth asking again: connection failure, 408/425/429, 5xx."""


class Stopped(AutoexecError):
    """The caller asked to stop while a call was still being retried."""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def auth_headers(api_key: str | None = None, auth_string: str | None = None) -> dict[str, str]:
    """Prefect Cloud's key or a self-hosted server's basic-auth string, as Prefect's client sends them."""
    api_key = api_key if api_key is not None else os.environ.get("PREFECT_API_KEY")
    auth_string = auth_string if auth_string is not None else os.environ.get("PREFECT_API_AUTH_STRING")
    if api_key:
        return {"Authorization": f"Bearer {api_key}"}
    if auth_string:
        return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}
    return {}


class PrefectApi:
    def __init__(self, url: str, stop: threading.Event | None = None, headers: dict[str, str] | None = None,
                 timeout: float = 4.0, max_delay: float = 5.0,
                 on_retry: Callable[[str], None] | None = None, concurrency: int = 2) -> None:
        self.url = url.rstrip("/")
        self.stop = stop or threading.Event()
        self.max_delay = max_delay
        self.on_retry = on_retry
        self.retries = 0
        # SQLite takes one write at a time: more calls in flight only make the server answer 503
        # and every caller back off. Shared by every view of this client.
        self._slots = threading.BoundedSemaphore(max(1, concurrency))
        self._client = httpx.Client(base_url=self.url + "/", timeout=timeout,
                                    headers=headers if headers is not None else auth_headers())

    def view(self, on_retry: Callable[[str], None]) -> "PrefectApi":
        """The same connection pool, with its own report of retried calls (one per job)."""
        other = object.__new__(PrefectApi)
        other.__dict__.update(self.__dict__)
        other.on_retry = on_retry
        other.retries = 0
        return other

    def close(self) -> None:
        self._client.close()

    def once(self, method: str, path: str, body: Any = None) -> Any:
        """One attempt within the same concurrency cap, ``None`` on any failure: for polls whose
        next round is the retry (the Cancel/Pause watch)."""
        try:
            with self._slots:
                resp = self._client.request(method, path, json=body)
            return resp.json() if resp.status_code < 300 and resp.content else None
        except (httpx.HTTPError, ValueError):
            return None

    def call(self, method: str, path: str, body: Any = None, on_retry: Callable[[str], None] | None = None) -> Any:
        def once() -> Any:
            try:
                with self._slots:
                    resp = self._client.request(method, path, json=body)
            except httpx.HTTPError as exc:
                raise _Transient(f"Failed to reach API at {self.url}: {type(exc).__name__}: {exc}") from None
            if resp.status_code < 400:
                return resp.json() if resp.content else None
            if resp.status_code not in TRANSIENT and resp.status_code < 500:
                raise ApiRefused(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
            raise _Transient(f"{method} {path}: HTTP {resp.status_code}")

        def told(problem: BaseException, _retry_no: int, _delay: float) -> None:
            self.retries += 1
            for hook in (on_retry, self.on_retry):
                if hook is not None:
                    hook(str(problem))

        try:
            return retry(once, attempts=None, backoff=Backoff(first=0.1, cap=self.max_delay), cancel=self.stop,
                         retry_on=(_Transient,), on_retry=told)
        except RetryCancelled:
            raise Stopped(f"{method} {path}") from None
