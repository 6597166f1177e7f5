"""File parameters (``file`` options): a console file id is downloaded once into the
shared cache ``data/cache/<fileId>`` and linked into the job as ``file/<name>``; in devmode a local
path works the same way without a console."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from autoexec.jobdir.layout import safe_name
from autoexec.jobdir.store import file_lock

CacheFetch = Callable[[int, Path], tuple[Path, str]]
"""Production: ``(file_id, cache_dir) -> (cached file, original file name)``."""


class FileParams:
    def __init__(self, data_dir: Path, job_file_dir: Path, fetch: CacheFetch | None = None) -> None:
        self.cache_dir = data_dir / "cache"
        self.job_file_dir = job_file_dir
        self.fetch = fetch
        self._memo: dict[int | str, str] = {}

    def __call__(self, item: int | str) -> str | None:
        """Returns the name under ``file/``, or None when the file cannot be had."""
        if item in self._memo:
            return self._memo[item]
        if self.fetch is not None and isinstance(item, str):
            if not item.strip().isdigit():
                return None  # production: only console file ids, never a path on the runner
            item = int(item)
        if isinstance(item, int):
            if self.fetch is None:
                return None
            # the fetcher (console downloads.fetch_file) locks the cache entry itself
            source, name = self.fetch(item, self.cache_dir)
        else:
            source = Path(item).expanduser().resolve()
            if not source.is_file():
                return None
            name = source.name
        name = safe_name(name)
        self._link(source, name)
        self._memo[item] = name
        return name

    def _link(self, source: Path, name: str) -> None:
        """``file/<name>`` -> source, replaced only when it points elsewhere."""
        self.job_file_dir.mkdir(parents=True, exist_ok=True)
        link = self.job_file_dir / name
        with file_lock(link):
            try:
                if os.readlink(link) == str(source):
                    return
                link.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                link.unlink()
            os.symlink(source, link)
