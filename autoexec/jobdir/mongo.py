"""The MongoDB side of the output/status store: ``_node_output``, ``_node_status``, ``_autoexec_env``.

Local files stay the primary record; Mongo is the fallback after a runner switch and the channel
between runners. So a Mongo that is slow or gone must never fail or stall a node: writes go to a
background thread (bounded, last write wins per document key, retried with a short backoff) and reads
that fail return ``None``. One warning is logged when an outage starts and one line when it ends.
"""
from __future__ import annotations

import atexit
import copy
import json
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from autoexec.conf.retry import Backoff, retry

if TYPE_CHECKING:
    from autoexec.conf.config import Config
    from autoexec.conf.masking import Masker

log = logging.getLogger("autoexec.jobdir.mongo")

NODE_OUTPUT = "_node_output"
NODE_STATUS = "_node_status"
AUTOEXEC_ENV = "_autoexec_env"

#: The runner pseudo-node (the original's "local node") under which runner ("local") output is stored.
LOCAL_NODE: Mapping[str, Any] = {"resourceId": 0, "host": "local", "port": 0}


def node_identity(node: Any) -> tuple[int, str, Any]:
    """``(resourceId, host, port)`` from a node mapping, a node model, or ``None`` (= runner node)."""
    if node is None:
        node = LOCAL_NODE
    if isinstance(node, Mapping):
        get = node.get
    else:
        def get(name: str, default: Any = None) -> Any:
            return getattr(node, name, default)
    resource_id = get("resourceId", None)
    if resource_id is None:
        resource_id = get("resource_id", 0)
    port = get("port", "")
    return int(resource_id or 0), str(get("host", "") or ""), "" if port is None else port


def _now() -> datetime:
    return datetime.now(timezone.utc)


_T = TypeVar("_T")


def _data(doc: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``data`` field of a node status/output document, when it holds one."""
    data = doc.get("data") if doc is not None else None
    return data if isinstance(data, dict) else None


@dataclass
class _Write:
    collection: str
    kind: str  # "update" ($set upsert) | "replace" (upsert) | "delete"
    filter: dict[str, Any]
    doc: dict[str, Any] = field(default_factory=dict)


class MongoStore:
    """Asynchronous, failure-tolerant access to the job collections of one database."""

    def __init__(
        self,
        client: Any,
        database: str = "autoexec",
        *,
        retries: int = 3,
        backoff: float = 0.1,
        max_pending: int = 10000,
        owns_client: bool = False,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self._client = client
        self._db = client[database]
        self.database = database
        self._retries = max(1, retries)
        self._backoff = backoff
        self._max_pending = max(1, max_pending)
        self._owns_client = owns_client
        self._secrets = tuple(s for s in secrets if s)
        self.mask: Masker | None = None
        """The job's masker (set by the loader): documents are written with secrets masked."""
        self._pending: OrderedDict[tuple[Any, ...], _Write] = OrderedDict()
        self._inflight: tuple[tuple[Any, ...], _Write] | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._outage = False
        self._overflow_logged = False
        self.dropped = 0  # writes given up (retries exhausted or queue overflow)
        _LIVE.add(self)

    def __repr__(self) -> str:  # the client repr may carry a URL with credentials
        return f"MongoStore(database={self.database!r}, pending={len(self._pending)}, outage={self._outage})"

    # ---- construction ---------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        url: str,
        database: str = "autoexec",
        username: str = "",
        password: str = "",
        max_pool_size: int = 64,
        timeout_ms: int = 3000,
        ca_file: str = "",
        verify_tls: bool = True,
        **kwargs: Any,
    ) -> MongoStore:
        """A lazily connecting pymongo client with short timeouts, so an outage costs seconds.
        TLS (``tls=true`` in the URL, or a CA file given) checks the server's certificate unless
        ``db.verifyTLS = 0`` says otherwise; ``db.caFile`` names the CA bundle to trust."""
        import pymongo

        tls: dict[str, Any] = {}
        if ca_file:
            tls["tlsCAFile"] = ca_file
        if not verify_tls:
            tls["tlsAllowInvalidCertificates"] = True
            tls["tlsAllowInvalidHostnames"] = True
        client: Any = pymongo.MongoClient(
            url,
            username=username or None,
            password=password or None,
            maxPoolSize=max_pool_size if max_pool_size > 0 else 64,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=max(timeout_ms * 10, 10000),
            connect=False,
            **tls,
        )
        return cls(client, database or "autoexec", owns_client=True, secrets=(password, url), **kwargs)

    @classmethod
    def from_config(cls, cfg: Config, **kwargs: Any) -> MongoStore:
        return cls.connect(cfg.db_url, cfg.db_name, cfg.db_username, cfg.db_password, cfg.db_max_pool_size,
                           ca_file=cfg.db_ca_file, verify_tls=cfg.db_verify_tls, **kwargs)

    @classmethod
    def from_block(cls, block: Any, **kwargs: Any) -> MongoStore:
        """From a :class:`autoexec.blocks.MongoDBConnection` (anything with ``to_store_args()``)."""
        return cls.connect(**{**block.to_store_args(), **kwargs})

    # ---- writes (queued) ------------------------------------------------------------------------

    def save_node_output(self, job_id: str | int, node: Any, data: dict[str, Any]) -> None:
        resource_id, host, port = node_identity(node)
        key = {"jobId": str(job_id), "resourceId": resource_id}
        doc = {**key, "host": host, "port": port, "data": copy.deepcopy(data), "createDate": _now()}
        self._enqueue((NODE_OUTPUT, key["jobId"], resource_id), _Write(NODE_OUTPUT, "update", key, doc))

    def save_node_status(self, job_id: str | int, phase: str, node: Any, data: dict[str, Any]) -> None:
        resource_id, host, port = node_identity(node)
        key = {"jobId": str(job_id), "phase": phase, "resourceId": resource_id}
        doc = {**key, "host": host, "port": port, "data": copy.deepcopy(data), "createDate": _now()}
        self._enqueue((NODE_STATUS, key["jobId"], phase, resource_id), _Write(NODE_STATUS, "replace", key, doc))

    def delete_job_status(self, job_id: str | int) -> None:
        """``--cleanstatus``: queued behind earlier writes; pending status writes of the job are moot."""
        job = str(job_id)
        with self._cond:
            for key in [k for k in self._pending if k[0] == NODE_STATUS and k[1] == job]:
                del self._pending[key]
        self._enqueue(("delete", NODE_STATUS, job), _Write(NODE_STATUS, "delete", {"jobId": job}))

    def save_env(self, job_id: str | int, name: str, value: str, hidden: bool = False) -> None:
        key = {"jobId": str(job_id), "name": name}
        doc = {**key, "value": value, "isHidden": 1 if hidden else 0, "createDate": _now()}
        self._enqueue((AUTOEXEC_ENV, key["jobId"], name), _Write(AUTOEXEC_ENV, "update", key, doc))

    def _enqueue(self, key: tuple[Any, ...], write: _Write) -> None:
        """Callers keep mutating their dicts (hence the deep copies above); the writer sends a snapshot."""
        with self._cond:
            if self._closed:
                log.warning("MongoDB store is closed; dropped a write to %s", write.collection)
                self.dropped += 1
                return
            self._pending.pop(key, None)  # last write wins, and it moves behind earlier deletes
            if len(self._pending) >= self._max_pending:
                self._pending.popitem(last=False)
                self.dropped += 1
                if not self._overflow_logged:
                    log.warning("MongoDB write queue full (%d); dropping the oldest writes", self._max_pending)
                    self._overflow_logged = True
            self._pending[key] = write
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="autoexec-mongo-writer", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                key, write = self._pending.popitem(last=False)
                self._inflight = (key, write)
                if len(self._pending) < self._max_pending // 2:
                    self._overflow_logged = False
            ok = self._apply_with_retry(write)
            with self._cond:
                self._inflight = None
                if not ok:
                    self.dropped += 1
                self._cond.notify_all()

    def _apply_with_retry(self, write: _Write) -> bool:
        attempts = 1 if self._outage else self._retries  # during an outage, don't pile up delays
        try:
            retry(lambda: self._apply(write), attempts=max(1, attempts),
                  backoff=Backoff(first=self._backoff, cap=float("inf")))
        except Exception as exc:  # noqa: BLE001 - any client failure means "Mongo unavailable"
            self._enter_outage(f"write to {write.collection}", exc)
            return False
        self._leave_outage()
        return True

    def _apply(self, write: _Write) -> None:
        collection = self._db[write.collection]
        doc = write.doc if self.mask is None else self.mask.value(write.doc)  # on the writer thread
        if write.kind == "update":
            collection.update_one(write.filter, {"$set": doc}, upsert=True)
        elif write.kind == "replace":
            collection.replace_one(write.filter, doc, upsert=True)
        else:
            collection.delete_many(write.filter)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every queued write was attempted; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending or self._inflight is not None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Flush (bounded by ``timeout``), stop the writer and close a client we created."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self.dropped += len(self._pending)
            self._pending.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._owns_client:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - closing a broken client must not fail the job's end
                pass
        _LIVE.discard(self)

    # ---- reads (synchronous, None on failure) ---------------------------------------------------

    def _queued(self, key: tuple[Any, ...]) -> _Write | None:
        with self._cond:
            if key in self._pending:
                return self._pending[key]
            if self._inflight is not None and self._inflight[0] == key:
                return self._inflight[1]
        return None

    def _read(self, what: str, fn: Callable[[], _T]) -> _T | None:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - any client failure means "Mongo unavailable"; reads fall back
            self._enter_outage(f"read of {what}", exc)
            return None
        self._leave_outage()
        return result

    def load_node_output(self, job_id: str | int, resource_id: int) -> dict[str, Any] | None:
        job, rid = str(job_id), int(resource_id)
        queued = self._queued((NODE_OUTPUT, job, rid))
        if queued is not None:
            return _data(queued.doc)
        doc = self._read(NODE_OUTPUT, lambda: self._db[NODE_OUTPUT].find_one({"jobId": job, "resourceId": rid}, {"data": True}))
        return _data(doc)

    def load_node_status(self, job_id: str | int, phase: str, resource_id: int) -> dict[str, Any] | None:
        job, rid = str(job_id), int(resource_id)
        queued = self._queued((NODE_STATUS, job, phase, rid))
        if queued is not None:
            return _data(queued.doc)
        if self._queued(("delete", NODE_STATUS, job)) is not None:
            return None
        pk = {"jobId": job, "phase": phase, "resourceId": rid}
        doc = self._read(NODE_STATUS, lambda: self._db[NODE_STATUS].find_one(pk, {"data": True}))
        return _data(doc)

    def load_env(self, job_id: str | int) -> dict[str, str] | None:
        """Job-global variables as strings (non-strings JSON-encoded); ``None`` if Mongo is unreachable."""
        job = str(job_id)
        docs = self._read(AUTOEXEC_ENV, lambda: list(self._db[AUTOEXEC_ENV].find({"jobId": job}, {"_id": 0, "name": 1, "value": 1})))
        if docs is None:
            return None
        env = {d["name"]: d.get("value") for d in docs if isinstance(d.get("name"), str)}
        with self._cond:
            queued = [w for k, w in self._pending.items() if k[0] == AUTOEXEC_ENV and k[1] == job]
            if self._inflight is not None and self._inflight[0][:2] == (AUTOEXEC_ENV, job):
                queued.insert(0, self._inflight[1])
        env.update({w.doc["name"]: w.doc["value"] for w in queued})
        return {k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in env.items() if v is not None}

    def find_documents(
        self, collection: str, condition: dict[str, Any], projection: dict[str, Any] | None = None, limit: int = 10
    ) -> list[dict[str, Any]] | None:
        """For the job socket's ``queryCollectDB``: at most ``limit`` documents, ``_id`` removed."""
        def query() -> list[dict[str, Any]]:
            cursor = self._db[collection].find(condition, projection).limit(limit)
            return [{k: v for k, v in doc.items() if k != "_id"} for doc in cursor]
        return self._read(collection, query)

    # ---- outage bookkeeping ---------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        if self.mask is not None:
            text = self.mask(text)
        return text[:500]

    def _enter_outage(self, what: str, exc: Exception) -> None:
        if not self._outage:
            self._outage = True
            text = self._scrub(str(exc))
            if "certificate verify failed" in text:
                text += " [trust its CA with db.caFile in config.ini, or turn checking off with db.verifyTLS = 0]"
            log.warning("MongoDB unavailable (%s failed: %s: %s); continuing on local files, further "
                        "failures are not logged until it recovers", what, type(exc).__name__, text)

    def _leave_outage(self) -> None:
        if self._outage:
            self._outage = False
            log.info("MongoDB reachable again")

    @property
    def pending_count(self) -> int:
        """Writes queued and not yet taken by the writer thread."""
        return len(self._pending)

    @property
    def in_outage(self) -> bool:
        return self._outage


def open_store(cfg: Config, **kwargs: Any) -> MongoStore | None:
    """The store configured by ``db.*`` in config.ini, or ``None`` when no ``db.url`` is set."""
    if not cfg.db_url:
        return None
    return MongoStore.from_config(cfg, **kwargs)


_LIVE: weakref.WeakSet[MongoStore] = weakref.WeakSet()


@atexit.register
def _flush_all_at_exit() -> None:
    """Give queued status/output writes a short chance to land before the interpreter exits."""
    for store in list(_LIVE):
        try:
            store.close(timeout=2.0)
        except Exception:  # noqa: BLE001 - at exit, one store's failure must not keep the others from flushing
            pass
