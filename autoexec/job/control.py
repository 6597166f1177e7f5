"""Job-wide flags and the kill/pause machinery.

One :class:`JobControl` per job invocation. Signal handlers, the Prefect cancellation path and
``--abort``/``--pause`` all end here: they set a flag and wake whatever is running, and every
running op registers a canceller so that abort reaches local process groups and remote hosts.
"""
from __future__ import annotations

import itertools
import signal
import threading
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from autoexec.job.thresholds import FailGate

Canceller = Callable[[], None]


class JobControl:
    def __init__(self) -> None:
        self.abort_event = threading.Event()
        self.pause_event = threading.Event()
        self.failed_event = threading.Event()
        self.halt_event = threading.Event()
        """No new node starts: something failed past what the job tolerates."""
        self.stop_event = threading.Event()
        """Set by abort and by pause: waits (op retries) end at once."""
        self.halt_reason = ""
        self._gates: dict[str, FailGate] = {}
        self._reported: set[tuple[str, str]] = set()
        """(phase, node) failures counted against the phase's current gate: each counts once, however
        many places (the node's op, its end, the phase runner) report it."""
        self._cancellers: dict[int, Canceller] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._signals = False

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

    def mark_failed(self, reason: str = "") -> None:
        """The job fails and no new node starts (the original's reaction to any failure)."""
        self.failed_event.set()
        with self._lock:
            self._halt(reason)

    def _halt(self, reason: str) -> bool:
        """Under ``_lock``: halts the job; ``True`` for the one call that did."""
        if self.halt_event.is_set():
            return False
        self.halt_reason = reason
        self.halt_event.set()
        return True

    def note_failed(self) -> None:
        """The job ends failed, but what runs may go on (failures within a threshold)."""
        self.failed_event.set()

    def set_fail_gate(self, phase: str, gate: FailGate) -> None:
        """Failures of ``phase``'s nodes count against ``gate`` from now on (a dispatch, a round)."""
        with self._lock:
            self._gates[phase] = gate
            self._reported = {key for key in self._reported if key[0] != phase}

    def node_failed(self, phase: str, node: str) -> str | None:
        """A node of ``phase`` failed; a repeated report of the same node is ignored. Without a
        tolerant gate the job halts at once, as the original does; with one it halts once the gate's
        limit is passed, and the reason is returned to exactly one caller (the one whose failure
        halted the job, decided under the lock even when nodes fail at the same moment) so that
        the halt is logged once."""
        self.failed_event.set()
        with self._lock:
            if (phase, node) in self._reported:
                return None
            self._reported.add((phase, node))
            gate = self._gates.get(phase)
            why = gate.add(node) if gate is not None else f"phase {phase}: node {node} failed"
            if why is None:
                return None
            first = self._halt(why)
        tolerant = gate is not None and gate.limit.tolerant
        return why if (tolerant and first) else None

    @property
    def halted(self) -> bool:
        """Dispatchers stop handing out nodes: a stop was requested or a failure halted the job."""
        return self.stopping or self.halt_event.is_set()

    def wait_stop(self, seconds: float) -> bool:
        """Sleeps up to ``seconds``; ``True`` at once when the job is aborted or paused."""
        return self.stop_event.wait(seconds)

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
        self.stop_event.set()
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
        self.stop_event.set()

    # --- signals -------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT/SIGHUP abort, SIGUSR1 pauses, as in the original. The handlers only start a thread:
        the real work must not run inside a signal handler on the main thread. Installed once per
        job, by its entry (the CLI, a deployment's flow) before the job's lock is taken."""
        if threading.current_thread() is not threading.main_thread() or self._signals:
            return
        self._signals = True
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
