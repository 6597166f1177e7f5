"""Per (phase, node) state shared by the ops of that node: environment, variables, connection.

Lives exactly as long as one node's run in one phase: the SSH/Tagent connection opened for the
first remote op is reused by the following ones and closed at the end (issue 4: one connection
per node per phase).
"""
from __future__ import annotations

import json
import os
from typing import Any

from autoexec.conf.block_names import NODE_CREDENTIALS_BLOCK_ENV
from autoexec.jobdir.layout import JobDir, NodePaths
from autoexec.jobdir.logs import NodeLog
from autoexec.models.nodes import Node
from autoexec.models.status import Status
from autoexec.job.runtime import JobRuntime, PhasePlan
from autoexec.jobdir.store import NodeOutput, NodeStatus
from autoexec.transports.base import Endpoint, RemoteTransport, Timeouts
from autoexec.transports.registry import TransportSpec


class NodeContext:
    def __init__(self, rt: JobRuntime, plan: PhasePlan, node: Node, status: NodeStatus,
                 output: NodeOutput, log: NodeLog, paths: NodePaths) -> None:
        self.rt = rt
        self.plan = plan
        self.node = node
        self.status = status
        self.output = output
        self.log = log
        self.triple = node.triple
        self.jobdir: JobDir = rt.jobdir
        self.paths = paths
        """This node's files in this phase as strings (built once per node run)."""
        self.transport: RemoteTransport | None = None
        self.prev_op_status: str = Status.PENDING
        self.fail_matcher: Any = None
        self.credentials_error: str | None = None
        try:
            self.password = rt.decrypt(node.password) if node.password else ""
        except ValueError as exc:  # SecretError: no password.key, or not the console's ciphertext
            self.password = ""
            self.credentials_error = f"node {node.host} password cannot be decrypted: {exc}"
            log.line(f"WARN: {self.credentials_error}")  # remote ops fail on it; runner-side tools go on
        self.username = node.username
        self.private_key: str | None = getattr(node, "privateKey", None) or (node.model_extra or {}).get("privateKey")
        if not self.password and not self.private_key and not self.credentials_error:
            self._credentials_from_block()

    def _credentials_from_block(self) -> None:
        """Nodes the console sends without a secret may name a Prefect credentials block (field
        ``credentialsBlock``), or the job may set a default one."""
        name = (self.node.model_extra or {}).get("credentialsBlock") or \
            self.rt.env.get(NODE_CREDENTIALS_BLOCK_ENV)
        if not name:
            return
        from autoexec.blocks.lookup import BlockUnavailable, node_credentials

        try:
            args = node_credentials(str(name)).to_endpoint_args()
        except BlockUnavailable as exc:
            self.credentials_error = str(exc)
            return
        self.username = args["username"] or self.username
        self.password = args["password"] or ""
        self.private_key = args["private_key"]
        self.rt.masker.add((self.password, self.private_key))

    # --- variables -----------------------------------------------------------------------
    @property
    def node_env(self) -> dict[str, Any]:
        """The persisted ``output.nodeEnv`` plus the node's identity variables."""
        node = self.node
        env = dict(self.output.data.get("nodeEnv") or {})
        port = node.port_text
        env.update({
            "RESOURCE_ID": node.resourceId, "NODE_NAME": node.nodeName or "", "NODE_HOST": node.host,
            "NODE_PORT": port, "NODE_PROTOCOL_PORT": node.protocolPort,
            "INS_NAME": node.nodeName or "", "INS_HOST": node.host, "INS_PORT": port,
            "INS_PROTOCOL_PORT": node.protocolPort,
        })
        name_path = self.rt.env.get("NAME_PATH") or os.environ.get("NAME_PATH")
        id_path = self.rt.env.get("ID_PATH") or os.environ.get("ID_PATH")
        if name_path:
            env["INS_PATH"] = f"{name_path}/{node.nodeName or ''}"
        if id_path:
            env["INS_ID_PATH"] = f"{id_path}/{node.resourceId}"
        return env

    def lookup_variable(self, name: str) -> str | None:
        """Conditions and references: node env first, then the job's environment."""
        env = self.node_env
        if name in env:
            value = env[name]
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        value = self.rt.env.get(name)
        if value is not None:
            return value
        return os.environ.get(name)

    # --- connection ----------------------------------------------------------------------
    @property
    def transport_spec(self) -> TransportSpec | None:
        """How this node is reached (by its protocol), or ``None``: the runner itself, or a
        protocol no transport is registered for (a database node for runner-side tools)."""
        if self.node.resourceId == 0:
            return None
        return self.rt.transports.get(self.node.protocol)

    def remote(self) -> RemoteTransport:
        if self.transport is None:
            spec = self.transport_spec
            if spec is None:
                raise ValueError(f"node {self.node.host} protocol {self.node.protocol!r} cannot run target "
                                 f"operations (expected {self.rt.transports.names()})")
            cfg = self.rt.config
            endpoint = Endpoint(host=self.node.host, port=int(self.node.protocolPort or 0),
                                username=self.username, password=self.password,
                                private_key=self.private_key)
            timeouts = Timeouts(connect=cfg.connect_timeout, read=cfg.read_timeout,
                                write=cfg.write_timeout, op=cfg.max_exec_secs)
            self.transport = spec.open(endpoint, timeouts, cfg.output_charsets)
        return self.transport

    def close(self) -> None:
        if self.transport is not None:
            try:
                self.transport.close()
            finally:
                self.transport = None
