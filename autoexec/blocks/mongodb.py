"""MongoDB connection as a Prefect block (the shared output/status store)."""
from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class MongoDBConnection(Block):
    """Where ``_node_output``/``_node_status``/``_autoexec_env`` live; the URL is secret because it
    may embed credentials."""

    _block_type_name = "Autoexec MongoDB Connection"
    _block_type_slug = "autoexec-mongodb-connection"
    _description = "MongoDB used by the autoexec runner to share node outputs, status and job env."

    url: SecretStr = Field(..., description="MongoDB URL, e.g. mongodb://h1:27017,h2:27017/?replicaSet=rs0.")
    database: str = Field(default="autoexec", description="Database name (config.ini db.name).")
    username: str = Field(default="", description="User name, if not in the URL (db.username).")
    password: SecretStr | None = Field(default=None, description="Password, if not in the URL (db.password).")
    max_pool_size: int = Field(default=64, gt=0, description="pymongo maxPoolSize (db.maxPoolSize).")
    timeout_ms: int = Field(default=3000, gt=0, description="Server selection/connect timeout in ms; keep it short.")

    def _password(self) -> str:
        return self.password.get_secret_value() if self.password is not None else ""

    def to_store_args(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`autoexec.jobdir.mongo.MongoStore.connect`."""
        return {
            "url": self.url.get_secret_value(),
            "database": self.database or "autoexec",
            "username": self.username,
            "password": self._password(),
            "max_pool_size": self.max_pool_size,
            "timeout_ms": self.timeout_ms,
        }

    def to_config_values(self) -> dict[str, str]:
        """The config.ini ``db.*`` keys this block stands for (plaintext)."""
        return {
            "db.url": self.url.get_secret_value(),
            "db.name": self.database or "autoexec",
            "db.username": self.username,
            "db.password": self._password(),
            "db.maxPoolSize": str(self.max_pool_size),
        }
