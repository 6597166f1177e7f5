"""Block construction, secret handling and the helpers the runner uses. Registration against a
server (``prefect block register -m autoexec.blocks``) is slow (~10 s), so it only runs when
``AUTOEXEC_TEST_PREFECT_CLI=1``."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

import autoexec.blocks as blocks
from autoexec.blocks import ConsoleCredentials, MongoDBConnection, NodeCredentials
from autoexec.jobdir.mongo import MongoStore


def test_module_exports_all_blocks() -> None:
    assert set(blocks.__all__) == {"ConsoleCredentials", "MongoDBConnection", "NodeCredentials"}
    slugs = {cls.get_block_type_slug() for cls in (ConsoleCredentials, MongoDBConnection, NodeCredentials)}
    assert slugs == {"autoexec-console-credentials", "autoexec-mongodb-connection", "autoexec-node-credentials"}


@pytest.mark.parametrize("cls", [ConsoleCredentials, MongoDBConnection, NodeCredentials])
def test_every_field_is_described(cls: type) -> None:
    for name, info in cls.model_fields.items():
        assert info.description, f"{cls.__name__}.{name} lacks a description"


def test_console_credentials() -> None:
    creds = ConsoleCredentials(base_url="http://console:8282/", username="svc", token="t0ken-s3cret", tenant="dev")
    assert "t0ken-s3cret" not in repr(creds) and "t0ken-s3cret" not in str(creds.model_dump())
    assert creds.verify_tls is True
    assert creds.to_config_values() == {"server.baseurl": "http://console:8282", "server.username": "svc",
                                        "server.password": "t0ken-s3cret", "server.tenant": "dev"}
    args = creds.to_client_args()
    assert args["token"] == "t0ken-s3cret" and args["tenant"] == "dev" and args["verify_tls"] is True
    assert ConsoleCredentials(base_url="x", username="u", token="t").to_client_args()["tenant"] == "none"
    with pytest.raises(ValidationError):
        ConsoleCredentials(base_url="x", username="u", token="t", read_timeout=0)


def test_mongodb_connection_feeds_the_store() -> None:
    block = MongoDBConnection(url="mongodb://u:url-s3cret@db:27017/", password="pw-s3cret", max_pool_size=8)
    assert "s3cret" not in repr(block)
    args = block.to_store_args()
    assert args == {"url": "mongodb://u:url-s3cret@db:27017/", "database": "autoexec", "username": "",
                    "password": "pw-s3cret", "max_pool_size": 8, "timeout_ms": 3000}
    assert block.to_config_values()["db.maxPoolSize"] == "8"
    store = MongoStore.from_block(block)  # pymongo connects lazily: nothing is contacted here
    try:
        assert store.database == "autoexec" and "s3cret" not in repr(store)
    finally:
        store.close(timeout=0.1)
    assert MongoDBConnection(url="mongodb://h/").to_store_args()["password"] == ""


def test_node_credentials() -> None:
    creds = NodeCredentials(username="root", password="n0de-pw", private_key="-----BEGIN KEY-----", passphrase="pp")
    assert "n0de-pw" not in repr(creds) and "BEGIN" not in repr(creds)
    assert creds.to_endpoint_args() == {"username": "root", "password": "n0de-pw", "private_key": "-----BEGIN KEY-----"}
    assert creds.passphrase_value() == "pp"
    assert NodeCredentials(username="u").to_node_fields() == {"username": "u", "password": ""}


def test_block_document_keeps_secrets_obfuscated() -> None:
    block = MongoDBConnection(url="mongodb://u:url-s3cret@db/", password="pw-s3cret")
    schema = MongoDBConnection._to_block_schema(block_type_id=uuid.uuid4())
    assert set(schema.fields["secret_fields"]) == {"url", "password"}
    doc = block._to_block_document(name="m", block_type_id=uuid.uuid4(), block_schema_id=uuid.uuid4())
    assert "s3cret" not in str(doc.data)


@pytest.mark.skipif(os.environ.get("AUTOEXEC_TEST_PREFECT_CLI") != "1",
                    reason="set AUTOEXEC_TEST_PREFECT_CLI=1 to run `prefect block register` (~10 s)")
def test_prefect_block_register_cli(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PREFECT_HOME": str(tmp_path), "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-m", "prefect", "block", "register", "-m", "autoexec.blocks"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout
    assert "Successfully registered 3 blocks" in proc.stdout
