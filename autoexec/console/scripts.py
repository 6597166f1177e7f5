"""Custom scripts by scriptId, stored in the job's script dir the way the original lays them out:
``<verId>.<fileName>`` plus ``<verId>.<fileName>.lib``, with the links
``<scriptId>``, ``<fileName>`` and ``<opId>`` pointing at the current version.

The version link doubles as the cache key: its target names the version sent as
``scriptVersionId`` and its mtime is ``lastModified``, so an unchanged script costs one 204.
Libraries are fetched iteratively, not recursively, so two scripts using each other cannot
deadlock on their locks (what the original guarded against too).
"""
from __future__ import annotations

import contextlib
import os
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from autoexec.console.errors import ConsoleDownloadError
from autoexec.console.models import ScriptDownload
from autoexec.jobdir.store import file_lock


class ScriptSource(Protocol):
    def fetch_script(self, job_id: str, script_id: str | int, dest_dir: Path, *,
                     operation_id: str | None = None, version_id: str | int | None = None,
                     last_modified: float = 0.0, file_name: str | None = None) -> ScriptDownload | None: ...


@dataclass
class StoredScript:
    path: Path
    """``<dir>/<fileName>``: the link a tool is started through (its name is what remote hosts see)."""
    libs: list[Path] = field(default_factory=list)
    """Every library file the script uses, transitively, to ship along to remote hosts."""


def _relink(link: Path, target_name: str) -> None:
    if link.is_symlink() and os.readlink(link) == target_name:
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}.{threading.get_ident()}.lnk")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target_name, tmp)
    os.replace(tmp, link)


def _current(link: Path) -> tuple[str | None, float]:
    """(version id, mtime) of the version link, or (None, 0) when nothing is cached yet."""
    try:
        target = os.readlink(link)
        mtime = link.lstat().st_mtime
    except OSError:
        return None, 0.0
    return target.split(".", 1)[0], mtime


def _extract_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")  # refuses absolute paths, .. and device files
    except (tarfile.TarError, OSError) as exc:
        raise ConsoleDownloadError(f"fetchScript: cannot extract {archive.name}: {exc}") from None


class ScriptStore:
    def __init__(self, client: ScriptSource, job_id: str) -> None:
        self.client = client
        self.job_id = str(job_id)
        self._memo: dict[tuple[str, str], StoredScript] = {}
        self._guard = threading.Lock()

    def get(self, script_id: str | int, op_id: str, directory: Path, file_name: str) -> StoredScript:
        """The script of ``op_id`` (once per process), its libraries fetched next to it."""
        key = (str(directory), op_id)
        with self._guard:
            if key in self._memo:
                return self._memo[key]
        directory.mkdir(parents=True, exist_ok=True)
        with file_lock(directory / op_id):
            name = self._fetch_one(str(script_id), op_id, directory, file_name)
            _relink(directory / op_id, os.readlink(directory / name))
            pending = list(self._uses(directory, name))
            seen: set[str] = set()
            while pending:  # iterative: libs of libs, each fetched once
                lib_id = pending.pop()
                if lib_id in seen:
                    continue
                seen.add(lib_id)
                lib_name = self._fetch_one(lib_id, None, directory, None)
                pending.extend(self._uses(directory, lib_name))
            stored = StoredScript(directory / name, [self._lib_path(directory, lib) for lib in sorted(seen)])
        with self._guard:
            self._memo[key] = stored
        return stored

    def _fetch_one(self, script_id: str, op_id: str | None, directory: Path, file_name: str | None) -> str:
        """Fetch (or confirm) one script; returns the file name its links use."""
        link = directory / script_id
        with file_lock(link):
            version, mtime = _current(link)
            got = self.client.fetch_script(self.job_id, script_id, directory, operation_id=op_id,
                                           version_id=version, last_modified=mtime, file_name=file_name)
            if got is None:
                if version is None:
                    raise ConsoleDownloadError(f"fetchScript: console sent nothing for script {script_id} "
                                               f"and there is no cached copy")
                versioned = os.readlink(link)
                name = versioned.split(".", 1)[1]
                if file_name and name != file_name:
                    _relink(directory / file_name, versioned)
                    name = file_name
                return name
            versioned = Path(got.path).name
            _relink(link, versioned)
            _relink(directory / got.file_name, versioned)
            if got.file_name.endswith(".tar"):
                _extract_tar(Path(got.path), directory)
            return got.file_name

    @staticmethod
    def _uses(directory: Path, file_name: str) -> list[str]:
        try:
            versioned = os.readlink(directory / file_name)
            text = (directory / f"{versioned}.lib").read_text(encoding="utf-8").strip()
        except OSError:
            return []
        return [x for x in text.split(",") if x]

    @staticmethod
    def _lib_path(directory: Path, lib_id: str) -> Path:
        """``<dir>/<libFileName>``: the name without the version prefix, as tools import it."""
        versioned = os.readlink(directory / lib_id)
        return directory / versioned.split(".", 1)[1]
