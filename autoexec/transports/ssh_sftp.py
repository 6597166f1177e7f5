"""SFTP staging and fetching for :class:`~autoexec.transports.ssh.SshTransport`.

The SFTP way is the fallback (see ``ssh_inline`` for the single-channel way): it handles big
uploads, fetched directories and hosts without a base64 tool, and phrases its own errors. Every
failure leaves here as a ``Failure`` naming the file it was at.
"""
from __future__ import annotations

import os
import posixpath
import stat
import threading
from pathlib import Path

from autoexec.transports.paramiko_lib import paramiko

from autoexec.transports.base import RemoteOp, Upload, fetch_plan, local_fetch_path
from autoexec.transports.ssh_common import Cancelled, Failure, SessionRefused, describe, open_session

__all__ = ["fetch_files", "open_sftp", "stage"]


def open_sftp(transport: paramiko.Transport, timeout: float) -> paramiko.SFTPClient:
    try:
        channel = open_session(transport, timeout)
        channel.invoke_subsystem("sftp")
        sftp = paramiko.SFTPClient(channel)
    except SessionRefused as err:
        raise Failure(f"cannot open SFTP: {err}") from None
    except (paramiko.SSHException, OSError, EOFError) as err:
        raise Failure(f"cannot open SFTP: {describe(err)}") from None
    return sftp


def stage(sftp: paramiko.SFTPClient, op: RemoteOp, rundir: str, cancel: threading.Event,
          write_timeout: float) -> None:
    """Create the op's root with its uploads, and its ``create_empty`` files under ``rundir``."""
    channel = sftp.get_channel()
    if channel is not None:
        channel.settimeout(write_timeout)
    current = "root"
    try:
        _sftp_makedirs(sftp, op.root)
        for upload in op.uploads:
            if cancel.is_set():
                raise Cancelled()
            current = str(upload.local)
            _upload(sftp, upload, posixpath.join(op.root, upload.remote_rel), cancel)
        _sftp_makedirs(sftp, rundir)
        for rel in op.create_empty:
            current = rel
            target = posixpath.join(rundir, rel)
            _sftp_makedirs(sftp, posixpath.dirname(target))
            sftp.open(target, "w").close()
    except (Cancelled, Failure):
        raise
    except (paramiko.SSHException, OSError, EOFError) as err:
        raise Failure(f"upload to {op.root} failed at {current}: {describe(err)}") from None


def fetch_files(sftp: paramiko.SFTPClient, op: RemoteOp, fetch_dir: Path, rundir: str, read_timeout: float,
                only: list[str] | None = None) -> dict[str, Path]:
    """Download ``only``, or else ``op.fetch`` and then the ``fetch_more`` round, into ``fetch_dir``.

    Missing files are skipped; a failing download is a ``Failure`` with exit code 0 (the command
    itself succeeded)."""
    channel = sftp.get_channel()
    if channel is not None:
        channel.settimeout(read_timeout)
    fetched: dict[str, Path] = {}
    rounds: list[list[str] | None] = [list(op.fetch), None] if only is None else [only]
    for wanted in rounds:
        for rel in wanted if wanted is not None else fetch_plan(op, fetched):
            remote = posixpath.join(rundir, rel)
            local = local_fetch_path(fetch_dir, rel)
            try:
                attrs = sftp.stat(remote)
            except FileNotFoundError:
                continue
            except (paramiko.SSHException, OSError, EOFError) as err:
                raise Failure(f"fetch of {rel} failed: {describe(err)}", exit_code=0) from None
            try:
                _download(sftp, remote, local, attrs)
            except (paramiko.SSHException, OSError, EOFError) as err:
                raise Failure(f"fetch of {rel} failed: {describe(err)}", exit_code=0) from None
            fetched[rel] = local
    return fetched


def _sftp_makedirs(sftp: paramiko.SFTPClient, path: str) -> None:
    if path in ("", "/"):
        return
    try:
        if stat.S_ISDIR(sftp.stat(path).st_mode or 0):
            return
        raise OSError(f"{path} exists and is not a directory")
    except FileNotFoundError:
        pass
    _sftp_makedirs(sftp, posixpath.dirname(path))
    try:
        sftp.mkdir(path)
    except OSError:
        # Another op of the same job may have created it meanwhile.
        if not stat.S_ISDIR(sftp.stat(path).st_mode or 0):
            raise


def _upload(sftp: paramiko.SFTPClient, upload: Upload, remote: str, cancel: threading.Event) -> None:
    local = upload.local
    if local.is_dir():
        for dirpath, dirnames, filenames in os.walk(local, followlinks=True):
            dirnames.sort()
            rel = os.path.relpath(dirpath, local)
            remote_dir = remote if rel == "." else posixpath.join(remote, *Path(rel).parts)
            _sftp_makedirs(sftp, remote_dir)
            sftp.chmod(remote_dir, stat.S_IMODE(os.stat(dirpath).st_mode))
            for name in sorted(filenames):
                if cancel.is_set():
                    raise Cancelled()
                path = os.path.join(dirpath, name)
                if not os.path.isfile(path):
                    continue  # sockets, fifos, dangling links: nothing a tool could use
                target = posixpath.join(remote_dir, name)
                sftp.put(path, target)
                sftp.chmod(target, stat.S_IMODE(os.stat(path).st_mode))
        return
    _sftp_makedirs(sftp, posixpath.dirname(remote))
    sftp.put(str(local), remote)
    mode = upload.mode if upload.mode is not None else stat.S_IMODE(local.stat().st_mode)
    sftp.chmod(remote, mode)


def _download(sftp: paramiko.SFTPClient, remote: str, local: Path, attrs: paramiko.SFTPAttributes) -> None:
    if stat.S_ISDIR(attrs.st_mode or 0):
        local.mkdir(parents=True, exist_ok=True)
        for entry in sftp.listdir_attr(remote):
            _download(sftp, posixpath.join(remote, entry.filename), local / entry.filename, entry)
        return
    local.parent.mkdir(parents=True, exist_ok=True)
    sftp.get(remote, str(local))
