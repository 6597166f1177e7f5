"""``--purgejobdata DAYS``: remove old job dirs, old history logs and old Prefect spools
(those a recorder could not replay, kept for a replay by hand).

A job's age is the mtime of its params.json. Job dirs nest (job ``123`` contains job ``123456``),
so a job dir is removed only down to its own files: nested younger jobs survive (the original deleted them).
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from autoexec.conf.config import load_config

JOB_FILES_AND_DIRS = {"params.json", "nodes.json", "script", "file", "status", "log", "output", "output-op",
                      "input", "livedata", "outbox", "autoexec.pid"}


def _is_job_dir(path: Path) -> bool:
    return (path / "params.json").is_file()


def _remove_job(path: Path) -> None:
    """Delete what belongs to this job; keep sub-directories that are (or contain) other jobs."""
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink() and child.name not in JOB_FILES_AND_DIRS:
            if any(_is_job_dir(Path(root)) for root, _, _ in os.walk(child)):
                continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def purge(data_dir: Path, days: float, now: float | None = None) -> list[Path]:
    job_root = data_dir / "job"
    if not job_root.is_dir():
        return []
    threshold = (now or time.time()) - days * 86400
    removed: list[Path] = []
    for root, _dirs, files in os.walk(job_root, topdown=False):
        here = Path(root)
        if "params.json" in files and (here / "params.json").stat().st_mtime < threshold:
            _remove_job(here)
            removed.append(here)
            print(f"INFO: Remove job directory:{here}")
        if here.name.endswith(".hislog") and here.exists():
            for name in files:
                log = here / name
                try:
                    if log.stat().st_mtime < threshold:
                        log.unlink()
                        print(f"INFO: Remove expired history log:{log}")
                except OSError:
                    pass
    for path in removed:  # prune now-empty parents up to data/job
        current = path
        while current != job_root and current.exists():
            try:
                current.rmdir()
            except OSError:
                break
            current = current.parent
    return removed


def purge_spools(spool_dir: Path, days: float, now: float | None = None) -> list[Path]:
    threshold = (now or time.time()) - days * 86400
    removed = []
    for spool in spool_dir.glob("*.jsonl") if spool_dir.is_dir() else []:
        try:
            if spool.stat().st_mtime < threshold:
                spool.unlink()
                removed.append(spool)
                print(f"INFO: Remove unrecorded Prefect spool:{spool}")
        except OSError:
            pass
    return removed


def purge_main(days_text: str) -> int:
    try:
        days = float(days_text)
    except ValueError:
        print(f"autoexec: error: --purgejobdata: {days_text!r} is not a number of days")
        return 2
    purge(load_config(decrypt=False).data_dir, days)
    from autoexec.conf.config import autoexec_home
    from autoexec.engine.run import spool_dir

    purge_spools(spool_dir(autoexec_home()), days)
    return 0
