from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mongomock
import pytest

from autoexec.conf.config import Config
from autoexec.jobdir.mongo import AUTOEXEC_ENV, NODE_OUTPUT, NODE_STATUS, MongoStore, node_identity, open_store
from tests.waiting import wait_until

NODE = {"resourceId": 42, "host": "10.0.0.5", "port": 3306, "password": "never-stored"}


@pytest.fixture()
def client() -> mongomock.MongoClient:
    return mongomock.MongoClient()


@pytest.fixture()
def store(client: mongomock.MongoClient):
    s = MongoStore(client, "autoexec", backoff=0.001)
    yield s
    s.close()


def _docs(client: mongomock.MongoClient, name: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in d.items() if k != "_id"} for d in client["autoexec"][name].find()]


def test_node_output_document_shape_and_upsert(store: MongoStore, client: mongomock.MongoClient) -> None:
    store.save_node_output(123, NODE, {"op1": {"outtext": "a"}})
    store.save_node_output("123", NODE, {"op1": {"outtext": "b"}, "nodeEnv": {}})
    assert store.flush(5)
    docs = _docs(client, NODE_OUTPUT)
    assert len(docs) == 1
    doc = docs[0]
    assert set(doc) == {"jobId", "resourceId", "host", "port", "data", "createDate"}
    assert doc["jobId"] == "123" and doc["resourceId"] == 42 and isinstance(doc["resourceId"], int)
    assert (doc["host"], doc["port"]) == ("10.0.0.5", 3306)
    assert doc["data"] == {"op1": {"outtext": "b"}, "nodeEnv": {}}
    assert isinstance(doc["createDate"], datetime)
    assert store.load_node_output(123, 42) == {"op1": {"outtext": "b"}, "nodeEnv": {}}
    assert store.load_node_output(123, 43) is None


def test_runner_output_goes_to_resource_zero(store: MongoStore, client: mongomock.MongoClient) -> None:
    store.save_node_output("7", None, {"x": 1})
    store.flush(5)
    doc = _docs(client, NODE_OUTPUT)[0]
    assert (doc["resourceId"], doc["host"], doc["port"]) == (0, "local", 0)


def test_node_status_replace_and_clean(store: MongoStore, client: mongomock.MongoClient) -> None:
    store.save_node_status(9, "build", NODE, {"status": "running", "extra": 1})
    store.flush(5)
    store.save_node_status(9, "build", NODE, {"status": "succeed"})
    store.save_node_status(9, "deploy", NODE, {"status": "failed"})
    store.save_node_status(10, "build", NODE, {"status": "pending"})
    store.flush(5)
    docs = _docs(client, NODE_STATUS)
    assert len(docs) == 3
    build = next(d for d in docs if d["jobId"] == "9" and d["phase"] == "build")
    assert set(build) == {"jobId", "phase", "resourceId", "host", "port", "data", "createDate"}
    assert build["data"] == {"status": "succeed"}  # replaced, not merged
    assert store.load_node_status(9, "deploy", 42) == {"status": "failed"}
    store.delete_job_status(9)
    assert store.load_node_status(9, "deploy", 42) is None
    store.flush(5)
    assert [d["jobId"] for d in _docs(client, NODE_STATUS)] == ["10"]


def test_env_round_trip(store: MongoStore, client: mongomock.MongoClient) -> None:
    store.save_env(5, "A", "1")
    store.save_env(5, "B", "secret", hidden=True)
    store.save_env(5, "A", "2")
    store.save_env(6, "C", "x")
    store.flush(5)
    docs = sorted(_docs(client, AUTOEXEC_ENV), key=lambda d: (d["jobId"], d["name"]))
    assert [(d["jobId"], d["name"], d["value"], d["isHidden"]) for d in docs] == [
        ("5", "A", "2", 0), ("5", "B", "secret", 1), ("6", "C", "x", 0)]
    assert set(docs[0]) == {"jobId", "name", "value", "isHidden", "createDate"}
    assert store.load_env("5") == {"A": "2", "B": "secret"}
    assert store.load_env(99) == {}


def test_reads_see_queued_writes_before_they_land(client: mongomock.MongoClient) -> None:
    gate = threading.Event()
    store = MongoStore(_Gated(client, gate), "autoexec")
    try:
        store.save_node_output(1, NODE, {"a": 1})
        store.save_env(1, "V", "v")
        assert store.load_node_output(1, 42) == {"a": 1}
        assert store.load_env(1) == {"V": "v"}
    finally:
        gate.set()
        store.close()


def test_node_identity_accepts_models() -> None:
    class Model:
        resourceId = 3
        host = "h"
        port = None

    assert node_identity(Model()) == (3, "h", "")
    assert node_identity({"resourceId": "4", "host": "x", "port": 22}) == (4, "x", 22)


class _FlakyCollection:
    def __init__(self, real: Any, owner: _Flaky) -> None:
        self._real, self._owner = real, owner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name in ("update_one", "replace_one", "delete_many", "find_one", "find"):
            def call(*args: Any, **kwargs: Any) -> Any:
                self._owner.calls += 1
                if self._owner.failures > 0:
                    self._owner.failures -= 1
                    raise ConnectionError("mongodb://u:topsecret@db:27017 unreachable")
                return attr(*args, **kwargs)
            return call
        return attr


class _FlakyDb:
    def __init__(self, real: Any, owner: _Flaky) -> None:
        self._real, self._owner = real, owner

    def __getitem__(self, name: str) -> _FlakyCollection:
        return _FlakyCollection(self._real[name], self._owner)


class _Flaky:
    """A client whose next ``failures`` operations raise, like a Mongo that went away."""

    def __init__(self, real: Any, failures: int) -> None:
        self._real, self.failures, self.calls = real, failures, 0

    def __getitem__(self, name: str) -> _FlakyDb:
        return _FlakyDb(self._real[name], self)


class _Gated(_Flaky):
    def __init__(self, real: Any, gate: threading.Event) -> None:
        super().__init__(real, 0)
        self._gate = gate

    def __getitem__(self, name: str) -> Any:
        gate, real_db = self._gate, self._real[name]

        class Db:
            def __getitem__(self, coll: str) -> Any:
                col = real_db[coll]

                class Col:
                    def __getattr__(self, attr: str) -> Any:
                        if attr in ("update_one", "replace_one"):
                            gate.wait(5)
                        return getattr(col, attr)
                return Col()
        return Db()


def test_write_retried_until_success(client: mongomock.MongoClient, caplog: pytest.LogCaptureFixture) -> None:
    flaky = _Flaky(client, failures=2)
    store = MongoStore(flaky, "autoexec", retries=3, backoff=0.001)
    store.save_node_output(1, NODE, {"a": 1})
    assert store.flush(5)
    assert flaky.calls == 3 and store.dropped == 0 and not store.in_outage
    assert _docs(client, NODE_OUTPUT)[0]["data"] == {"a": 1}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    store.close()


def test_outage_drops_logs_once_and_recovers(client: mongomock.MongoClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="autoexec.jobdir.mongo")
    flaky = _Flaky(client, failures=100)
    store = MongoStore(flaky, "autoexec", retries=3, backoff=0.001)
    for i in range(4):
        store.save_node_status(1, "p", {"resourceId": i, "host": "h", "port": 1}, {"status": "running"})
    assert store.flush(5)
    assert store.in_outage and store.dropped == 4
    assert flaky.calls == 3 + 3  # the first write retried 3 times, later ones tried once each
    assert store.load_node_status(1, "p", 0) is None  # failed read -> None, never raises
    assert store.load_env(1) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    flaky.failures = 0
    store.save_node_status(1, "p", NODE, {"status": "succeed"})
    assert store.flush(5)
    assert not store.in_outage
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert store.load_node_status(1, "p", 42) == {"status": "succeed"}
    store.close()


def test_secrets_scrubbed_from_outage_log(client: mongomock.MongoClient, caplog: pytest.LogCaptureFixture) -> None:
    store = MongoStore(_Flaky(client, failures=1), "autoexec", retries=1, secrets=("topsecret",))
    store.save_env(1, "A", "b")
    store.flush(5)
    assert "topsecret" not in caplog.text and "***" in caplog.text
    assert "topsecret" not in repr(store)
    store.close()


def test_queue_is_bounded_last_write_wins(client: mongomock.MongoClient) -> None:
    gate = threading.Event()
    store = MongoStore(_Gated(client, gate), "autoexec", max_pending=3)
    store.save_env(1, "first", "x")  # taken by the writer, blocked on the gate
    wait_until(lambda: not store.pending_count, 5, "the writer to take the first write", interval=0.001, required=False)
    for i in range(10):
        store.save_env(1, "same", str(i))  # one key: never more than one pending
    for name in ("a", "b", "c"):
        store.save_env(1, name, "v")
    gate.set()
    assert store.flush(5)
    env = store.load_env(1)
    assert env == {"first": "x", "a": "v", "b": "v", "c": "v"}  # "same" (oldest pending) was dropped
    assert store.dropped == 1
    store.close()


def test_open_store_and_config(tmp_path: Path) -> None:
    assert open_store(Config(home=tmp_path, path=tmp_path / "c.ini")) is None
    cfg = Config(home=tmp_path, path=tmp_path / "c.ini", db_url="mongodb://127.0.0.1:1/", db_name="x",
                 db_username="u", db_password="pw-secret")
    store = open_store(cfg, retries=1)
    assert store is not None and store.database == "x"
    assert "pw-secret" not in repr(store)
    store.close(timeout=0.1)


def test_created_date_is_utc(store: MongoStore, client: mongomock.MongoClient) -> None:
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    store.save_env(1, "A", "b")
    store.flush(5)
    created = _docs(client, AUTOEXEC_ENV)[0]["createDate"]
    naive = created.astimezone(timezone.utc).replace(tzinfo=None) if created.tzinfo else created
    assert abs((naive - before).total_seconds()) < 60


def test_saved_data_is_a_snapshot(store: MongoStore, client: mongomock.MongoClient) -> None:
    data: dict[str, Any] = {"op1": {"a": 1}}
    store.save_node_output(1, NODE, data)
    data["op2"] = {"b": 2}  # the runner keeps accumulating into the same dict
    store.flush(5)
    assert _docs(client, NODE_OUTPUT)[0]["data"] == {"op1": {"a": 1}}
