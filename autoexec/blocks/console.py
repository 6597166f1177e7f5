"""Console connection as a Prefect block, so deployments need no config.ini on the worker."""
from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class ConsoleCredentials(Block):
    """How the runner signs requests to the neatlogic console (user, HMAC password, URL)."""

    _block_type_name = "Autoexec Console Credentials"
    _block_type_slug = "autoexec-console-credentials"
    _description = "neatlogic console base URL and HMAC access key/secret used by the autoexec runner."

    base_url: str = Field(..., description="Console base URL, e.g. http://console:8282 (a trailing / is ignored).")
    username: str = Field(..., description="Access key (config.ini server.username).")
    token: SecretStr = Field(..., description="HMAC secret (config.ini server.password).")
    tenant: str = Field(default="", description="Tenant sent in the Tenant header; empty means 'none'.")
    verify_tls: bool = Field(default=True, description="Verify the console's TLS certificate.")
    connect_timeout: float = Field(default=10.0, gt=0, description="Seconds to wait for a TCP/TLS connection.")
    read_timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for a response.")

    def to_config_values(self) -> dict[str, str]:
        """The config.ini keys this block stands for (plaintext: feed them to the runner, not to a file)."""
        return {
            "server.baseurl": self.base_url.rstrip("/"),
            "server.username": self.username,
            "server.password": self.token.get_secret_value(),
            "server.tenant": self.tenant,
        }

    def to_client_args(self) -> dict[str, Any]:
        """Keyword arguments for :class:`autoexec.console.client.ConsoleClient`."""
        return {
            "base_url": self.base_url.rstrip("/"),
            "username": self.username,
            "token": self.token.get_secret_value(),
            "tenant": self.tenant or "none",
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "verify_tls": self.verify_tls,
        }
