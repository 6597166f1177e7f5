"""A CLI job's side of its record: the event spool it writes, and making sure the machine's recorder
process runs. Here, not in the engine, so the engine never imports the recorder above it."""
from __future__ import annotations

import os
import time
from pathlib import Path

from autoexec.conf.settings import load_settings
from autoexec.engine.jobloop import JobOutcome
from autoexec.engine.run import EventSink, SpoolSink, Tee, run_engine, spool_dir
from autoexec.job.runtime import JobRuntime


class Recorder:
    """A CLI job's side of its record: the spool, and making sure the machine's recorder runs."""

    def __init__(self, rt: JobRuntime, home: Path, verbose: bool = False) -> None:
        self.rt = rt
        self.home = home
        name = f"{rt.job_id.replace('/', '_')}-{os.getpid()}-{int(time.time() * 1000)}.jsonl"
        self.spool = SpoolSink(spool_dir(home) / name)
        if not load_settings().prefect_record:
            return  # the spool waits for a recorder started later (autoexec-server start)
        from autoexec.flows.recorder import ensure_recorder

        problem = ensure_recorder(home, verbose=verbose)
        if problem:
            rt.console.line(f"WARN: Prefect recorder not started ({problem}); the record follows once one runs.")

    def run(self, extra: EventSink | None = None) -> JobOutcome:
        rt = self.rt  # signal handlers: installed by the CLI before the job's lock was taken
        try:
            return run_engine(rt, Tee(self.spool, extra) if extra is not None else self.spool)
        finally:
            self.spool.close()

    def wait(self, timeout: float) -> bool:
        """``AUTOEXEC_PREFECT_WAIT``: callers that read the Prefect record right after the job.
        The recorder removes a spool once its record is complete."""
        deadline = time.monotonic() + timeout
        while self.spool.path.exists():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True
