"""The store round trip against a real MongoDB (``AUTOEXEC_TEST_MONGO_URL=mongodb://host:27017/``)."""
from __future__ import annotations

import os
import uuid

import pytest

from autoexec.jobdir.mongo import MongoStore

URL = os.environ.get("AUTOEXEC_TEST_MONGO_URL", "")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not URL, reason="set AUTOEXEC_TEST_MONGO_URL to run against a real MongoDB"),
]


def test_round_trip_against_real_server() -> None:
    database = f"autoexec_test_{uuid.uuid4().hex[:8]}"
    store = MongoStore.connect(URL, database, timeout_ms=5000)
    node = {"resourceId": 7, "host": "h", "port": 22}
    try:
        store.save_node_output("j1", node, {"op": {"outtext": "x"}})
        store.save_node_status("j1", "p", node, {"status": "succeed"})
        store.save_env("j1", "V", "1", hidden=True)
        assert store.flush(20)
        assert not store.in_outage
        assert store.load_node_output("j1", 7) == {"op": {"outtext": "x"}}
        assert store.load_node_status("j1", "p", 7) == {"status": "succeed"}
        assert store.load_env("j1") == {"V": "1"}
        store.delete_job_status("j1")
        assert store.flush(20)
        assert store.load_node_status("j1", "p", 7) is None
    finally:
        store._client.drop_database(database)
        store.close()
