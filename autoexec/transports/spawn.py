"""Starting one runner-side child as ``Popen(start_new_session=True, close_fds=True,
stdin=DEVNULL, stdout=PIPE, stderr=STDOUT, cwd=...)`` would, at less cost per start.

The runner is GIL-bound and starts one child per node, so the spawn is done in C by libc's
``posix_spawn`` (the stdlib's ``os.posix_spawn`` cannot set a cwd); ``Popen`` is the fallback.
Why and figures: docs/performance.md."""
from __future__ import annotations

import ctypes
import errno
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from autoexec.conf.settings import load_settings

_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
# posix_spawnattr flags as glibc's <spawn.h> defines them (used only where the C library says it is
# glibc). Python does not expose them: ``os.posix_spawn`` takes ``setsid``/``setsigdef`` keywords,
# but it cannot set the child's cwd or close inherited descriptors (docs/performance.md).
_POSIX_SPAWN_SETSIGDEF = 0x04
_POSIX_SPAWN_SETSID = 0x80


@dataclass
class Spawned:
    """A started child: its pid and the read end of its output pipe (close-on-exec, ours to close).
    ``popen`` is set when the fallback started it: that object then does the waiting. Reaping is
    as ``Popen``'s: one waiter at a time, :meth:`poll` never blocks."""

    pid: int
    fd: int
    popen: subprocess.Popen[bytes] | None = None
    returncode: int | None = None
    _wait_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def poll(self) -> int | None:
        if self.returncode is None:
            if self.popen is not None:
                self.returncode = self.popen.poll()
            elif self._wait_lock.acquire(False):  # else another thread is in wait()
                try:
                    self._reap(os.WNOHANG)
                finally:
                    self._wait_lock.release()
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            if self.popen is not None:
                self.returncode = self.popen.wait()
            else:
                with self._wait_lock:
                    while self.returncode is None:
                        self._reap(0)
        return self.returncode

    def _reap(self, flags: int) -> None:
        if self.returncode is not None:
            return
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:
            self.returncode = 0  # someone else reaped it (SIGCHLD ignored): as Popen
            return
        if pid == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)

    def close_output(self) -> None:
        fd, self.fd = self.fd, -1
        if self.popen is not None and self.popen.stdout is not None:
            self.popen.stdout.close()
        elif fd >= 0:
            os.close(fd)


class _Libc:
    """The libc entry points, resolved once; construction raises ``AttributeError``/``OSError``
    when something is missing, and the ``Popen`` path is used instead."""

    def __init__(self) -> None:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            raise OSError("posix_spawn flags are only known for glibc")
        # posix_spawn returns once the child has exec'd: called with the GIL released (CDLL).
        # The setup calls only fill memory: called holding it (PyDLL), because every release is a
        # chance for one of the other node threads to take the GIL and this one to wait for it.
        blocking, libc = ctypes.CDLL(None, use_errno=True), ctypes.PyDLL(None)
        vp, ip, cp = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
        self.spawn = _fn(blocking.posix_spawn, ctypes.POINTER(ctypes.c_int), cp, vp, vp, vp, vp)
        self.fa_init = _fn(libc.posix_spawn_file_actions_init, vp)
        self.fa_destroy = _fn(libc.posix_spawn_file_actions_destroy, vp)
        self.fa_open = _fn(libc.posix_spawn_file_actions_addopen, vp, ip, cp, ip, ctypes.c_uint)
        self.fa_dup2 = _fn(libc.posix_spawn_file_actions_adddup2, vp, ip, ip)
        self.fa_chdir = _fn(libc.posix_spawn_file_actions_addchdir_np, vp, cp)
        self.fa_closefrom = _fn(libc.posix_spawn_file_actions_addclosefrom_np, vp, ip)
        attr_init = _fn(libc.posix_spawnattr_init, vp)
        set_flags = _fn(libc.posix_spawnattr_setflags, vp, ctypes.c_short)
        set_sigdefault = _fn(libc.posix_spawnattr_setsigdefault, vp, vp)
        sigemptyset, sigaddset = _fn(libc.sigemptyset, vp), _fn(libc.sigaddset, vp, ip)
        # Opaque libc structures: generously sized buffers (glibc x86_64: 80, 336 and 128 bytes).
        self.attr = ctypes.create_string_buffer(1024)
        sigdefault = ctypes.create_string_buffer(1024)
        if attr_init(self.attr) or sigemptyset(sigdefault) or sigaddset(sigdefault, signal.SIGPIPE) \
                or sigaddset(sigdefault, signal.SIGXFSZ) or set_sigdefault(self.attr, sigdefault) \
                or set_flags(self.attr, _POSIX_SPAWN_SETSID | _POSIX_SPAWN_SETSIGDEF):
            raise OSError("posix_spawnattr setup failed")  # e.g. a glibc without POSIX_SPAWN_SETSID
        self.devnull = os.fsencode(os.devnull)


def _fn(fn: Any, *argtypes: Any) -> Any:
    fn.argtypes = list(argtypes)
    fn.restype = ctypes.c_int
    return fn


def _load() -> _Libc | None:
    if load_settings().spawn == "popen":  # decided once, at import: the check costs more than a spawn saves
        return None
    try:
        return _Libc()
    except (AttributeError, OSError):
        return None


_LIBC = _load()


def spawn(argv: Sequence[str], executable: str, cwd: str, env: Mapping[str, str]) -> Spawned:
    """Starts ``executable`` with ``argv`` (``argv[0]`` as given). ``executable`` is a path (see
    :func:`which`). Raises ``OSError`` as ``Popen`` would (missing program or cwd, permissions),
    ``ValueError`` for a NUL byte in an argument or ``=`` in a variable name."""
    args = [os.fsencode(a) for a in argv]
    if any(b"\0" in a for a in args):
        raise ValueError("embedded null byte")
    if any("=" in key for key in env):
        raise ValueError("illegal environment variable name")
    # os.fsencode() of each key and value, as Popen does, in one encode per entry
    envp = [f"{key}={value}".encode(_FS_ENCODING, _FS_ERRORS) for key, value in env.items()]
    if _LIBC is None:
        return _spawn_popen(argv, executable, cwd, {e.split(b"=", 1)[0]: e.split(b"=", 1)[1] for e in envp})
    return _spawn_libc(_LIBC, os.fsencode(executable), args, os.fsencode(cwd), envp)


def _spawn_libc(libc: _Libc, path: bytes, args: list[bytes], cwd: bytes, envp: list[bytes]) -> Spawned:
    read_fd, write_fd = _pipe()
    actions = ctypes.create_string_buffer(1024)
    try:
        if libc.fa_init(actions):
            raise MemoryError("posix_spawn_file_actions_init")
        try:
            if (libc.fa_open(actions, 0, libc.devnull, os.O_RDWR, 0) or libc.fa_dup2(actions, write_fd, 1)
                    or libc.fa_dup2(actions, write_fd, 2) or libc.fa_chdir(actions, cwd)
                    or libc.fa_closefrom(actions, 3)):
                raise MemoryError("posix_spawn_file_actions")
            argv_c = (ctypes.c_char_p * (len(args) + 1))(*args)
            envp_c = (ctypes.c_char_p * (len(envp) + 1))(*envp)
            pid = ctypes.c_int(0)
            rc = libc.spawn(ctypes.byref(pid), path, actions, libc.attr, argv_c, envp_c)
        finally:
            libc.fa_destroy(actions)
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    os.close(write_fd)
    if rc:
        os.close(read_fd)
        missing_cwd = rc == errno.ENOENT and not os.path.isdir(cwd)
        raise OSError(rc, os.strerror(rc), os.fsdecode(cwd if missing_cwd else path))
    return Spawned(pid.value, read_fd)


def _pipe() -> tuple[int, int]:
    """A close-on-exec pipe whose ends are above 2, so the child's ``dup2`` onto 0-2 can never
    clobber them (the runner may run with a standard descriptor closed)."""
    read_fd, write_fd = os.pipe()
    low = [fd for fd in (read_fd, write_fd) if fd <= 2]
    if not low:
        return read_fd, write_fd
    import fcntl

    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) if fd <= 2 else fd for fd in (read_fd, write_fd)]
    for fd in low:
        os.close(fd)
    return moved[0], moved[1]


def _spawn_popen(argv: Sequence[str], executable: str, cwd: str, env: Mapping[bytes, bytes]) -> Spawned:
    proc = subprocess.Popen(list(argv), executable=executable, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            close_fds=True, bufsize=0)
    assert proc.stdout is not None
    return Spawned(proc.pid, proc.stdout.fileno(), proc)


def which(name: str, path_var: str | None, cwd: str) -> str:
    """The file ``exec`` would run for ``name`` with ``PATH=path_var`` in ``cwd``, as ``Popen``
    searches it (a name with a ``/`` is taken as is; relative PATH entries are relative to the
    child's cwd). Raises ``FileNotFoundError``/``PermissionError`` as that search would fail."""
    if os.path.dirname(name):
        return name
    dirs = (path_var if path_var is not None else os.defpath).split(os.pathsep)
    denied = False
    for folder in dirs:
        candidate = os.path.join(folder, name)
        full = os.path.join(cwd, candidate)
        if os.path.isfile(full):
            if os.access(full, os.X_OK):
                return candidate
            denied = True
    code = errno.EACCES if denied else errno.ENOENT
    raise OSError(code, os.strerror(code), name)
