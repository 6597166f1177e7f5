"""Job-wide flags and the kill/pause machinery (§8.6, §12.2).

One :class:`JobControl` per job invocation. Signal handlers, the Prefect cancellation path and
``--abort``/``--pause`` all end here: they set a flag and wake whatever is running, and every
running op registers a canceller so that abort reaches local process groups and remote hosts.
"""
from __future__ import annotations

import itertools
import signal
import threading
from typing import Callable

Canceller = Callable[[], None]


class JobControl:
    def __init__(self) -> None:
        self.abort_event = threading.Event()
        self.pause_event = threading.Event()
        self.failed_event = threading.Event()
        self._cancellers: dict[int, Canceller] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()

    # --- state -------------------------------------------------------------------------
    @property
    def aborting(self) -> bool:
        return self.abort_event.is_set()

    @property
    def pausing(self) -> bool:
        return self.pause_event.is_set()

    @property
    def stopping(self) -> bool:
        """No new node or op may start (pause, abort)."""
        return self.abort_event.is_set() or self.pause_event.is_set()

    @property
    def failed(self) -> bool:
        return self.failed_event.is_set()

    def mark_failed(self) -> None:
        self.failed_event.set()

    @property
    def halted(self) -> bool:
        """Dispatchers stop handing out nodes: a stop was requested or something failed."""
        return self.stopping or self.failed

    # --- running ops ---------------------------------------------------------------------
    def register(self, canceller: Canceller) -> int:
        with self._lock:
            token = next(self._ids)
            self._cancellers[token] = canceller
        if self.aborting:
            canceller()
        return token

    def unregister(self, token: int) -> None:
        with self._lock:
            self._cancellers.pop(token, None)

    def abort(self) -> None:
        if self.abort_event.is_set():
            return
        self.abort_event.set()
        with self._lock:
            cancellers = list(self._cancellers.values())
        threads = [threading.Thread(target=_quietly, args=(c,), daemon=True) for c in cancellers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)

    def pause(self) -> None:
        if self.pause_event.is_set() or self.abort_event.is_set():
            return
        self.pause_event.set()

    # --- signals -------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT/SIGHUP abort, SIGUSR1 pauses (§12.2). The handlers only start a thread:
        the real work must not run inside a signal handler on the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                                                    signal.SIGUSR1, signal.SIGQUIT})

        def on_kill(signum: int, frame: object) -> None:
            threading.Thread(target=self.abort, name="autoexec-abort", daemon=True).start()

        def on_pause(signum: int, frame: object) -> None:
            threading.Thread(target=self.pause, name="autoexec-pause", daemon=True).start()

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, on_kill)
        signal.signal(signal.SIGUSR1, on_pause)


def _quietly(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - a failing canceller must not stop the others
        pass
