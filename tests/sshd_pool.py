"""Throwaway OpenSSH servers on 127.0.0.1 for transport tests and benchmarks.

Real sshd rather than a paramiko test server because the behaviours that matter (MaxStartups
drops, session processes, ``setsid``, ``/proc`` environments, SFTP) are sshd's. Only needs root and
``/usr/sbin/sshd``; nothing leaves loopback. Every process started here is a ``Popen`` we own and
is stopped by that handle, never by name.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.waiting import wait_until

SSHD = "/usr/sbin/sshd"
TEST_USER = "autoexec-t"
TEST_PASSWORD = "autoexec-t-Pw1"
"""Fixed (not random) so concurrent test sessions on one machine agree on it."""
TEST_HOME = "/var/lib/autoexec-t"
POOL_MAX_STARTUPS = "1000:30:1000"
DEFAULT_MAX_STARTUPS = "10:30:100"


def unavailable_reason() -> str | None:
    """Why real sshd tests cannot run here, or ``None``."""
    if not os.path.exists(SSHD):
        return f"{SSHD} is not installed"
    if os.geteuid() != 0:
        return "real sshd tests need root (test user creation, privilege separation)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is not installed"
    return None


def _sbin(name: str) -> str:
    """An admin tool by full path: a test's PATH may lack the sbin directories."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])) or name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_user() -> None:
    try:
        home = pwd.getpwnam(TEST_USER).pw_dir
    except KeyError:
        subprocess.run([_sbin("useradd"), "-M", "-d", TEST_HOME, "-s", "/bin/bash", TEST_USER],
                       check=True, capture_output=True)
        home = TEST_HOME
    # A missing home makes sshd print "Could not chdir to home directory" into every session.
    os.makedirs(home, exist_ok=True)
    shutil.chown(home, TEST_USER, TEST_USER)
    for attempt in range(10):  # chpasswd fails while another session holds the shadow lock
        done = subprocess.run([_sbin("chpasswd")], input=f"{TEST_USER}:{TEST_PASSWORD}\n", text=True,
                              capture_output=True)
        if done.returncode == 0:
            return
        time.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"chpasswd failed: {done.stderr.strip()}")


@dataclass
class Sshd:
    port: int
    process: subprocess.Popen[bytes]
    config: Path
    log: Path
    private_dir: Path | None = None
    """Config and keys of an sshd in its own mount namespace (outside ``/tmp``), removed on stop."""

    @property
    def tmp(self) -> Path:
        """``/tmp`` as this server's sessions see it (its own, for a server started with ``tmp=``)."""
        return Path(f"/proc/{self.pid}/root/tmp")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def session_pids(self) -> list[int]:
        """Per-connection sshd processes (and their children) under this listener."""
        return _descendants(self.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.private_dir is not None:
            shutil.rmtree(self.private_dir, ignore_errors=True)


TMP_KINDS = ("readonly", "full")


@dataclass
class SshdPool:
    """What tests need to log in: ports of running sshd, the user, a password and a client key."""

    workdir: Path
    user: str = TEST_USER
    password: str = field(default=TEST_PASSWORD, repr=False)
    servers: list[Sshd] = field(default_factory=list)
    host: str = "127.0.0.1"

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    @property
    def client_key_path(self) -> Path:
        return self.workdir / "client_ed25519"

    @property
    def client_key_text(self) -> str:
        return self.client_key_path.read_text()

    def key_path(self, kind: str) -> Path:
        """Client private key of type ``ed25519``, ``ecdsa`` or ``rsa`` (all authorized)."""
        return self.workdir / f"client_{kind}"

    def start_sshd(self, max_startups: str = POOL_MAX_STARTUPS, max_sessions: int = 64,
                   extra_config: tuple[str, ...] = (), tmp: str | None = None) -> Sshd:
        """Start one more sshd on a free port; it belongs to the pool and stops with it.

        ``extra_config``: more ``sshd_config`` lines (e.g. ``SetEnv PATH=...``). ``tmp``: run it
        in a mount namespace of its own whose ``/tmp`` is a small tmpfs that the test user cannot
        write (``readonly``) or that is full (``full``); the machine's ``/tmp`` is untouched."""
        if tmp is not None and tmp not in TMP_KINDS:
            raise ValueError(f"tmp must be one of {TMP_KINDS}")
        log = self.workdir / "sshd.log"
        for _ in range(5):  # a free port can be taken by someone else before sshd binds it
            port = _free_port()
            base = self.workdir
            private = None
            if tmp is not None:  # its /tmp hides the pool's workdir: config and keys live elsewhere
                private = Path(tempfile.mkdtemp(prefix="autoexec-sshd-ns-", dir="/var/tmp"))
                private.chmod(0o755)
                for name in ("hostkey", "authorized_keys"):
                    shutil.copy2(self.workdir / name, private / name)
                base = private
            config = base / f"sshd_config.{port}"
            lines = _config_text(base, port, max_startups, max_sessions).rstrip("\n").split("\n")
            config.write_text("\n".join([*lines, *extra_config, ""]))
            log = self.workdir / f"sshd.{port}.log"
            command = [SSHD, "-D", "-e", "-f", str(config)]
            if tmp is not None:
                command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                           _NAMESPACED_TMP[tmp] + ' && exec "$@"', "sh", *command]
            with open(log, "ab") as sink:
                process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            server = Sshd(port, process, config, log, private)
            if _wait_for_banner(server):
                self.servers.append(server)
                return server
            server.stop()
        raise RuntimeError(f"sshd would not start; its log {log}:\n{_tail(log)}")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()


def _config_text(workdir: Path, port: int, max_startups: str, max_sessions: int) -> str:
    return "\n".join([
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {workdir / 'hostkey'}",
        f"PidFile {workdir / f'sshd.{port}.pid'}",
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
        "StrictModes no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication yes",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PermitRootLogin no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        f"MaxStartups {max_startups}",
        f"MaxSessions {max_sessions}",
        "LoginGraceTime 30",
        "LogLevel ERROR",
        "Subsystem sftp internal-sftp",
        "",
    ])


_NAMESPACED_TMP = {
    "readonly": "mount -t tmpfs -o size=1m,mode=0755 autoexec-ro-tmp /tmp",
    "full": "mount -t tmpfs -o size=256k,mode=1777 autoexec-full-tmp /tmp && "
            "{ dd if=/dev/zero of=/tmp/filler bs=4k 2>/dev/null || true; }",
}


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"(unreadable: {err})"


def _banner_or_exit(server: Sshd) -> str | None:
    if server.process.poll() is not None:
        return "exited"
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=1) as s:
            if s.recv(4) == b"SSH-":
                return "banner"
    except OSError:
        pass
    return None


def _wait_for_banner(server: Sshd, limit: float = 60.0) -> bool:
    """False when sshd exited or stayed silent: the caller shows its log."""
    try:
        return wait_until(lambda: _banner_or_exit(server), limit, "sshd's banner") == "banner"
    except AssertionError:
        return False


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat_line = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat_line.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    for child in _children(pid):
        out += [child, *_descendants(child)]
    return out


def start_pool(count: int = 4, max_startups: str = POOL_MAX_STARTUPS, workdir: Path | None = None) -> SshdPool:
    """Create keys and the test user, then start ``count`` sshd. Caller must ``stop()`` the pool."""
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    _ensure_user()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="autoexec-sshd-"))
    workdir.chmod(0o755)  # sshd's unprivileged child reads authorized_keys from here
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / "hostkey")],
                   check=True)
    public: list[str] = []
    for kind, extra in (("ed25519", []), ("ecdsa", ["-b", "256"]), ("rsa", ["-b", "2048", "-m", "PEM"])):
        path = workdir / f"client_{kind}"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-f", str(path)], check=True)
        path.chmod(0o644)  # readable by tests running as another user; throwaway anyway
        public.append((workdir / f"client_{kind}.pub").read_text().strip())
    (workdir / "authorized_keys").write_text("\n".join(public) + "\n")
    (workdir / "authorized_keys").chmod(0o644)
    pool = SshdPool(workdir=workdir)
    try:
        for _ in range(count):
            pool.start_sshd(max_startups)
    except BaseException:
        pool.stop()
        raise
    return pool


# ------------------------------------------------------------------------------------ target accounts
# Real hosts differ in what an account's shell does at login and logout. Tests create accounts
# with a given login shell and dot files; names are unique per call so concurrent test sessions
# never share one, and ``remove_account`` deletes the user, its processes and its home.

NOISY_DOTFILES = {
    ".bash_profile": 'echo "profile says hi"; echo "profile warns" >&2\n',
    ".bashrc": 'echo "bashrc says hi"; echo "bashrc warns" >&2\n',
    ".bash_logout": 'echo "logout says bye"; echo "logout warns" >&2\n',
    ".profile": 'echo "sh profile says hi"; echo "sh profile warns" >&2\n',
}
"""Login shells noisy on stdout and stderr at start (profile, and ``.bashrc``, which bash reads
for every sshd command) and at exit (``.bash_logout``)."""


@dataclass
class Account:
    name: str
    password: str = field(repr=False)
    home: Path
    shell: str

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.name).pw_uid


def _shadow_tool(argv: list[str], stdin: str | None = None) -> None:
    """useradd/userdel/chpasswd, retried while another session holds the shadow lock."""
    for attempt in range(20):
        done = subprocess.run([_sbin(argv[0]), *argv[1:]], input=stdin, text=True, capture_output=True)
        if done.returncode == 0:
            return
        time.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip()}")


def create_account(shell: str = "/bin/bash", dotfiles: dict[str, str] | None = None) -> Account:
    """A new user with ``shell`` as login shell and ``dotfiles`` (name → text) in its home."""
    name = f"axt{secrets.token_hex(5)}"
    home = Path(f"/var/lib/{name}")
    password = f"Pw-{secrets.token_hex(8)}"
    _shadow_tool(["useradd", "-M", "-d", str(home), "-s", shell, name])
    account = Account(name, password, home, shell)
    try:
        home.mkdir(mode=0o755)
        for rel, text in (dotfiles or {}).items():
            (home / rel).write_text(text)
        subprocess.run(["chown", "-R", f"{name}:", str(home)], check=True, capture_output=True)
        _shadow_tool(["chpasswd"], f"{name}:{password}\n")
    except BaseException:
        remove_account(account)
        raise
    return account


def remove_account(account: Account) -> None:
    try:
        uid = account.uid
    except KeyError:
        uid = None
    if uid is not None:
        for _ in range(3):  # processes a test left behind (killed by uid, never by name)
            pids = [pid for pid in _all_pids() if _owner(pid) == uid]
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not pids:
                break
            time.sleep(0.2)
        try:
            _shadow_tool(["userdel", account.name])
        except RuntimeError:
            pass
    shutil.rmtree(account.home, ignore_errors=True)


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def path_without(names: tuple[str, ...], where: Path) -> str:
    """A directory of links to every program on the default PATH but ``names``: set as an sshd's
    PATH (``SetEnv``), it is a host without those tools. Returns the directory."""
    where.mkdir(parents=True, exist_ok=True)
    for directory in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        if not os.path.isdir(directory):
            continue
        for entry in os.listdir(directory):
            link = where / entry
            if entry in names or link.exists() or link.is_symlink():
                continue
            link.symlink_to(os.path.join(directory, entry))
    return str(where)
