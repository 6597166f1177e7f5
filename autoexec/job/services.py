"""What the op path asks the console for, on demand, behind one interface.

Production asks the neatlogic console (:mod:`autoexec.load.production`); devmode with a console named
still downloads custom scripts and file parameters from it; without a console,
:class:`NoConsole` gives each request the answer "no console": the same outcome the job had when
these were optional callables left unset. Callbacks (status changes) are the
:class:`autoexec.events.notify.Notifier`'s business, not this one's.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from autoexec.conf.errors import AutoexecError

if TYPE_CHECKING:
    from autoexec.job.files import FileParams
    from autoexec.models.nodes import Node
    from autoexec.models.params import Operation


class ConsoleUnavailable(AutoexecError, OSError):
    """A request that needs a console, in a job that has none (the op fails with this line)."""


class ConsoleServices(Protocol):
    def fetch_script(self, op: Operation) -> Path:
        """A custom script by its ``scriptId``, stored in the job directory."""
        ...

    def script_libs(self, op: Operation) -> list[Path]:
        """The library files a fetched custom script uses (shipped to remote hosts with it)."""
        ...

    def file_name(self, item: int | str) -> str | None:
        """Links a file parameter (console file id, or a local path in devmode) into ``<job>/file/``
        and returns its name; ``None`` when it cannot be had."""
        ...

    def account_password(self, node: Node, username: str, account_id: str, protocol: str) -> str | None:
        """An account's password; ``None``: nobody to ask, the value stays as written."""
        ...

    def refresh_nodes(self, node_from: str, phase: str, group_no: int) -> None:
        """Re-downloads a phase's (``node_from`` ``phase``) or group's nodes file before it runs."""
        ...

    def global_lock(self, params: dict[str, Any]) -> Any:
        """The console's global lock API; raises :class:`ConsoleUnavailable` without a console."""
        ...

    def close(self) -> None:
        """After the job's last callback was flushed (the console session)."""
        ...


class NoConsole:
    """No console: local files only, nothing downloaded, nothing asked."""

    def __init__(self, files: FileParams, config_path: Path | str = "config.ini") -> None:
        self.files = files
        self.config_path = config_path

    def fetch_script(self, op: Operation) -> Path:
        raise ConsoleUnavailable(
            f"operation {op.opId}: custom script {op.scriptId} is downloaded from the console by its "
            f"scriptId, and no console is configured: set server.baseurl, server.username and "
            f"server.password in {self.config_path} (or AUTOEXEC_SERVER_BASEURL/USERNAME/PASSWORD)")

    def script_libs(self, op: Operation) -> list[Path]:
        return []

    def file_name(self, item: int | str) -> str | None:
        return self.files(item)

    def account_password(self, node: Node, username: str, account_id: str, protocol: str) -> str | None:
        return None

    def refresh_nodes(self, node_from: str, phase: str, group_no: int) -> None:
        return None  # the nodes files in the job directory are the ones to use

    def global_lock(self, params: dict[str, Any]) -> Any:
        raise ConsoleUnavailable("global lock needs the console (not available in devmode)")

    def close(self) -> None:
        return None
