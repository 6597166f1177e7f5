"""The descriptor-level file API the job's files are written through."""
from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from autoexec.jobdir.fileio import AppendFile, append_once, open_fd_creating_dirs, read_bytes, write_new


def test_write_new_is_owner_only_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / ".nodes.json.tmp"
    write_new(path, b"secret")
    assert path.read_bytes() == b"secret" and stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_new(path, b"other")
    assert read_bytes(path) == b"secret"


def test_append_once_creates_unless_told_not_to_and_can_sync(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        append_once(tmp_path / "console.txt", b"x\n", create=False)
    append_once(tmp_path / "dead.jsonl", b"one\n", sync=True)
    append_once(tmp_path / "dead.jsonl", b"two\n", create=False)
    assert (tmp_path / "dead.jsonl").read_bytes() == b"one\ntwo\n"


def test_append_file_keeps_every_record_whole_across_threads(tmp_path: Path) -> None:
    spool = AppendFile(tmp_path / "spool" / "job.jsonl")  # parent directories on demand

    def writer(n: int) -> None:
        for i in range(200):
            spool.write(f"{n}:{i}:{'x' * 500}\n".encode())

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spool.close()
    spool.close()  # twice is harmless
    lines = (tmp_path / "spool" / "job.jsonl").read_text().splitlines()
    assert len(lines) == 800 and all(line.endswith("x" * 500) and line.count(":") == 2 for line in lines)


def test_open_creating_dirs_makes_the_parents(tmp_path: Path) -> None:
    import os

    fd = open_fd_creating_dirs(tmp_path / "a" / "b" / "f", os.O_WRONLY | os.O_CREAT)
    os.close(fd)
    assert (tmp_path / "a" / "b" / "f").exists()
