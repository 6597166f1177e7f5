"""Everything that talks to the neatlogic console: signing, client, durable callback outbox."""
from __future__ import annotations

from autoexec.console.client import ConsoleClient
from autoexec.console.errors import (ConsoleAuthError, ConsoleDownloadError, ConsoleError,
                                     ConsoleHTTPError, ConsoleStatusError, ConsoleUnavailable)
from autoexec.console.notifier import ConsoleNotifier
from autoexec.console.outbox import Outbox

__all__ = ["ConsoleAuthError", "ConsoleClient", "ConsoleDownloadError", "ConsoleError",
           "ConsoleHTTPError", "ConsoleNotifier", "ConsoleStatusError", "ConsoleUnavailable", "Outbox"]
