"""Node login credentials as a Prefect block, for nodes whose password the console does not send."""
from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class NodeCredentials(Block):
    """An SSH/Tagent login. Either ``password`` or ``private_key`` (PEM text or key file path)."""

    _block_type_name = "Autoexec Node Credentials"
    _block_type_slug = "autoexec-node-credentials"
    _description = "User name with password and/or private key for reaching autoexec target nodes."

    username: str = Field(..., description="Login user on the node.")
    password: SecretStr | None = Field(default=None, description="Login password (plaintext, not {ENCRYPTED}).")
    private_key: SecretStr | None = Field(default=None, description="Private key PEM text, or a path to a key file.")
    passphrase: SecretStr | None = Field(default=None, description="Passphrase of an encrypted private key.")

    def to_endpoint_args(self) -> dict[str, Any]:
        """``username``/``password``/``private_key`` as :class:`autoexec.transports.base.Endpoint` takes them."""
        return {
            "username": self.username,
            "password": self.password.get_secret_value() if self.password is not None else "",
            "private_key": self.private_key.get_secret_value() if self.private_key is not None else None,
        }

    def passphrase_value(self) -> str | None:
        return self.passphrase.get_secret_value() if self.passphrase is not None else None

    def to_node_fields(self) -> dict[str, str]:
        """Fields to overlay on a nodes-file entry that lacks credentials."""
        args = self.to_endpoint_args()
        return {"username": args["username"], "password": args["password"]}
