"""Which transport reaches a node, looked up by the node's protocol name.

The op path (``ops.nodectx``, ``ops.dispatch``, ``ops.stale``, the dry run) never names a protocol:
it asks this table for the protocol's :class:`TransportSpec` and reads what differs between
transports from its :class:`~autoexec.transports.base.TransportTraits`. Adding a way of reaching
hosts is one entry here (or one :meth:`TransportTable.with_entry` call for a job or a test). The
table holds classes' factories, never open connections; the factories import their transport
lazily, so a job that only runs on the runner never loads paramiko.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Iterator, Mapping

from autoexec.transports.base import Endpoint, RemoteTransport, Timeouts, TransportTraits

TransportFactory = Callable[[Endpoint, Timeouts, "tuple[str, ...]"], RemoteTransport]
"""``(endpoint, timeouts, output charsets) -> transport``: one connection to one node."""


@dataclass(frozen=True)
class TransportSpec:
    traits: TransportTraits
    open: TransportFactory


class TransportTable(Mapping[str, TransportSpec]):
    """Protocol name -> :class:`TransportSpec`; immutable, so one table may serve many jobs."""

    def __init__(self, specs: Mapping[str, TransportSpec]) -> None:
        self._specs = MappingProxyType(dict(specs))

    def __getitem__(self, protocol: str) -> TransportSpec:
        return self._specs[protocol]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def with_entry(self, protocol: str, spec: TransportSpec) -> TransportTable:
        """A new table with ``protocol`` added (or replaced)."""
        return TransportTable({**self._specs, protocol: spec})

    def names(self) -> str:
        """The known protocols, for error messages (``ssh or tagent``)."""
        names = sorted(self._specs)
        return " or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1]


def _open_ssh(endpoint: Endpoint, timeouts: Timeouts, charsets: tuple[str, ...]) -> RemoteTransport:
    from autoexec.transports.ssh import SshTransport

    return SshTransport(endpoint, timeouts, output_charsets=charsets)


def _open_tagent(endpoint: Endpoint, timeouts: Timeouts, charsets: tuple[str, ...]) -> RemoteTransport:
    from autoexec.transports.tagent import TagentTransport

    return TagentTransport(endpoint, timeouts, output_charsets=charsets)


SSH_TRAITS = TransportTraits(temp_root="/tmp", needs_secret=True, op_env=(("TERM", "dumb"),))
"""The original's remote shell had a "dumb" terminal; a login needs a password or a key."""
TAGENT_TRAITS = TransportTraits(temp_root="$TMPDIR", needs_secret=False)
"""The agent expands ``$TMPDIR`` itself and sets its own terminal; an empty password is its own
(agent-checked) credential."""


def default_transports() -> TransportTable:
    """The transports this package ships; built per call (a job's runtime holds its own table)."""
    return TransportTable({
        "ssh": TransportSpec(SSH_TRAITS, _open_ssh),
        "tagent": TransportSpec(TAGENT_TRAITS, _open_tagent),
    })
