"""SshTransport against real sshd on 127.0.0.1: the "remote" host is this machine, so tests can
look at the remote filesystem and ``/proc`` directly."""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import pytest

from autoexec.transports.base import Endpoint, FailureKind, RemoteOp, RemoteResult, RemoteTransport, Timeouts, Upload
from autoexec.transports.ssh import HandshakeLimiter, SshTransport, reset_handshake_limiter
from tests.procs import pids_with_env
from tests.sshd_pool import Sshd, SshdPool
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

FAST = Timeouts(connect=3, read=10, write=10, op=20)


def _endpoint(pool: SshdPool, index: int = 0, **overrides: object) -> Endpoint:
    fields: dict[str, object] = {"host": pool.host, "port": pool.ports[index], "username": pool.user,
                                 "password": pool.password}
    fields.update(overrides)
    return Endpoint(**fields)  # type: ignore[arg-type]


def _job() -> str:
    return uuid.uuid4().hex[:12]


def _op(job_id: str, argv: list[str], **kw: object) -> RemoteOp:
    values: dict[str, object] = dict(job_id=job_id, root=f"/tmp/autoexec-{job_id}-1-0", uploads=[],
                                     workdir="", argv=argv, env={"AUTOEXEC_JOBID": job_id})
    values.update(kw)
    return RemoteOp(**values)  # type: ignore[arg-type]


def _cmdlines_containing(text: str) -> list[str]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                found.append(cmdline.decode(errors="replace"))
    return found


class _Background:
    """Runs one op in a thread so the test can act on the host while it is in flight."""

    def __init__(self, transport: SshTransport, op: RemoteOp, cancel: threading.Event | None = None) -> None:
        self.lines: list[str] = []
        self.cancel = cancel or threading.Event()
        self.result: RemoteResult | None = None
        self.finished_at = 0.0
        self._thread = threading.Thread(target=self._go, args=(transport, op), daemon=True)
        self._thread.start()

    def _go(self, transport: SshTransport, op: RemoteOp) -> None:
        self.result = transport.run(op, self.lines.append, self.cancel)
        self.finished_at = time.monotonic()

    def join(self, limit: float) -> RemoteResult:
        self._thread.join(limit)
        assert self.result is not None, f"op still running after {limit}s"
        return self.result


@pytest.fixture
def transports() -> Iterator[Callable[..., SshTransport]]:
    made: list[SshTransport] = []

    def make(endpoint: Endpoint, timeouts: Timeouts = FAST, policy: str = "auto-add") -> SshTransport:
        made.append(SshTransport(endpoint, timeouts, policy))
        return made[-1]

    yield make
    for transport in made:
        transport.close()


@pytest.fixture
def job_roots() -> Iterator[list[str]]:
    """Remote roots a test may leave behind on purpose; removed afterwards."""
    roots: list[str] = []
    yield roots
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------------------------ happy paths


def test_password_run_delivers_env_verbatim_argv_and_exit_code(sshd_pool: SshdPool, transports) -> None:
    job = _job()
    tricky = ["$HOME", "`id -u`", "it's \"quoted\"", "two  spaces", "semi;colon && echo pwned", "*"]
    transport = transports(_endpoint(sshd_pool))
    assert isinstance(transport, RemoteTransport)
    lines: list[str] = []
    op = _op(job, ["sh", "-c", 'echo "jobid=$AUTOEXEC_JOBID extra=$EXTRA"; for a; do echo "[$a]"; done; exit 7',
                   "sh", *tricky], env={"AUTOEXEC_JOBID": job, "EXTRA": "x y"})
    result = transport.run(op, lines.append, threading.Event())
    assert result == RemoteResult(exit_code=7, error=None)
    assert lines == [f"jobid={job} extra=x y"] + [f"[{a}]" for a in tricky]


def test_output_is_streamed_in_order_and_partial_last_line_delivered(sshd_pool: SshdPool, transports) -> None:
    transport = transports(_endpoint(sshd_pool))
    seen: list[tuple[float, str]] = []
    script = "echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2; sleep 0.8; printf 'tail \\377 no newline'"
    result = transport.run(_op(_job(), ["sh", "-c", script]),
                           lambda line: seen.append((time.monotonic(), line)), threading.Event())
    assert result.ok
    assert [line for _, line in seen] == ["out1", "err1", "out2", "tail \ufffd no newline"]
    # out2 reached us while the command was still sleeping, not when it ended
    assert seen[3][0] - seen[2][0] > 0.5


@pytest.mark.parametrize("kind,as_text", [("ed25519", True), ("ecdsa", False), ("rsa", True)])
def test_private_key_auth(sshd_pool: SshdPool, transports, kind: str, as_text: bool) -> None:
    key_path = sshd_pool.key_path(kind)
    key = key_path.read_text() if as_text else str(key_path)
    transport = transports(_endpoint(sshd_pool, 1, password="", private_key=key))
    lines: list[str] = []
    result = transport.run(_op(_job(), ["id", "-un"]), lines.append, threading.Event())
    assert result.ok and lines == [sshd_pool.user]


def test_unusable_private_key_is_a_clear_error_without_key_text(sshd_pool: SshdPool, transports) -> None:
    garbage = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END OPENSSH PRIVATE KEY-----\n"
    transport = transports(_endpoint(sshd_pool, password="", private_key=garbage))
    result = transport.run(_op(_job(), ["true"]), lambda _l: None, threading.Event())
    assert result.exit_code is None and result.error is not None
    assert "private key" in result.error and "c2VjcmV0" not in result.error


def test_uploads_tree_and_fetches_outputs_then_removes_root(sshd_pool: SshdPool, transports,
                                                           tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "lib" / "deep").mkdir(parents=True)
    (bundle / "tool.sh").write_text("#!/bin/sh\necho tool ran in $(pwd)\n")
    (bundle / "tool.sh").chmod(0o640)  # Upload.mode must win for the single-file upload below
    (bundle / "lib" / "deep" / "data.txt").write_text("payload\n")
    (bundle / "lib" / "helper").write_text("#!/bin/sh\n")
    (bundle / "lib" / "helper").chmod(0o750)
    job = _job()
    op = _op(
        job,
        ["sh", "-c", "./tool.sh; cat lib/deep/data.txt; stat -c '%a %n' tool.sh lib/helper; "
                     "test -f output.json && test ! -s output.json && echo empty-output-ok; "
                     "echo '{\"k\": 1}' > output.json; mkdir -p out/sub; echo x > out/sub/f.txt"],
        uploads=[Upload(bundle / "lib", "mybundle/lib"), Upload(bundle / "tool.sh", "mybundle/tool.sh", 0o700)],
        workdir="mybundle",
        create_empty=["output.json"],
        fetch=["output.json", "out", "never-written.txt"],
        fetch_dir=tmp_path / "fetched",
    )
    lines: list[str] = []
    result = transports(_endpoint(sshd_pool)).run(op, lines.append, threading.Event())
    assert result.ok, (result, lines)
    assert lines == [f"tool ran in {op.root}/mybundle", "payload", "700 tool.sh", "750 lib/helper",
                     "empty-output-ok"]
    assert set(result.fetched) == {"output.json", "out"}
    assert result.fetched["output.json"].read_text() == '{"k": 1}\n'
    assert (tmp_path / "fetched" / "out" / "sub" / "f.txt").read_text() == "x\n"
    assert not os.path.exists(op.root)


@pytest.mark.parametrize("reserve", [True, False])
def test_failed_op_keeps_root_only_when_reserved(sshd_pool: SshdPool, transports, job_roots: list[str],
                                                 reserve: bool) -> None:
    op = _op(_job(), ["sh", "-c", "echo partial > result.txt; exit 4"], workdir="b", keep_dir_on_failure=reserve)
    job_roots.append(op.root)
    result = transports(_endpoint(sshd_pool)).run(op, lambda _l: None, threading.Event())
    assert result.exit_code == 4 and not result.ok
    assert os.path.exists(f"{op.root}/b/result.txt") is reserve


def test_one_connection_serves_several_ops(sshd_pool: SshdPool, transports) -> None:
    transport = transports(_endpoint(sshd_pool, 2))
    pids: list[str] = []
    for _ in range(2):
        # $PPID of the login shell is the per-connection sshd process
        result = transport.run(_op(_job(), ["sh", "-c", "ps -o ppid= -p $PPID"]), pids.append, threading.Event())
        assert result.ok
    assert transport.connections_opened == 1
    assert pids[0] == pids[1]


def test_secrets_stay_out_of_repr_and_errors(sshd_pool: SshdPool, transports) -> None:
    secret = "S3cret-" + uuid.uuid4().hex
    transport = transports(_endpoint(sshd_pool, password=secret))
    result = transport.run(_op(_job(), ["true"]), lambda _l: None, threading.Event())
    assert result.error == f"ssh {sshd_pool.user}@127.0.0.1:{sshd_pool.ports[0]}: authentication failed"
    assert secret not in repr(transport) and secret not in repr(transport.endpoint)


# ------------------------------------------------------------------------------------ faults


def _timed_run(transport: SshTransport, op: RemoteOp) -> tuple[RemoteResult, float]:
    start = time.monotonic()
    result = transport.run(op, lambda _l: None, threading.Event())
    return result, time.monotonic() - start


def test_closed_port_fails_at_once(transports) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: refused
        result, took = _timed_run(transports(Endpoint("127.0.0.1", port, "u", "p")), _op(_job(), ["true"]))
    assert result == RemoteResult(None, f"ssh u@127.0.0.1:{port}: connection refused", kind=FailureKind.CONNECT)
    assert took < 1


def test_listener_that_never_sends_a_banner_times_out(transports) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        timeouts = Timeouts(connect=2, read=10, op=20)
        result, took = _timed_run(transports(Endpoint("127.0.0.1", port, "u", "p"), timeouts), _op(_job(), ["true"]))
    assert result.exit_code is None
    assert result.error is not None and result.error.startswith(f"ssh u@127.0.0.1:{port}: no SSH banner")
    assert 1.9 < took < 3.5


def test_command_exceeding_op_timeout_is_killed(sshd_pool: SshdPool, transports) -> None:
    job = _job()
    op = _op(job, ["sh", "-c", "echo started; sleep 30"], timeout=2)
    result, took = _timed_run(transports(_endpoint(sshd_pool)), op)
    assert result.exit_code is None
    assert result.error is not None and "op timeout of 2s" in result.error
    assert 1.9 < took < 3.5
    wait_until(lambda: not pids_with_env(f"AUTOEXEC_JOBID={job}"), 2)


def test_silence_longer_than_read_timeout_fails(sshd_pool: SshdPool, transports) -> None:
    job = _job()
    timeouts = Timeouts(connect=3, read=1.5, op=20)
    result, took = _timed_run(transports(_endpoint(sshd_pool), timeouts),
                              _op(job, ["sh", "-c", "echo a; sleep 1; echo b; sleep 30"]))
    assert result.exit_code is None
    assert result.error is not None and "no output for 1.5s" in result.error
    assert 2.4 < took < 4  # the clock restarts at each line: 1 s + 1.5 s
    wait_until(lambda: not pids_with_env(f"AUTOEXEC_JOBID={job}"), 2)


def test_sshd_killed_mid_command_is_a_connection_error(sshd_pool: SshdPool, sshd_dedicated: Sshd,
                                                       transports, job_roots: list[str]) -> None:
    transport = transports(Endpoint("127.0.0.1", sshd_dedicated.port, sshd_pool.user, sshd_pool.password))
    op = _op(_job(), ["sh", "-c", "echo started; sleep 30"])
    job_roots.append(op.root)  # in case the test fails before the transport removes it
    running = _Background(transport, op)
    wait_until(lambda: running.lines == ["started"], 5)
    killed_at = time.monotonic()
    for pid in sshd_dedicated.session_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    result = running.join(5)
    assert result.exit_code is None
    assert result.error == (f"ssh {sshd_pool.user}@127.0.0.1:{sshd_dedicated.port}: "
                            f"connection lost while the command was running; {op.root} removed over a new connection")
    assert running.finished_at - killed_at < 5
    assert not os.path.exists(op.root)


def test_cancel_kills_remote_process_group_promptly(sshd_pool: SshdPool, transports) -> None:
    job = _job()
    marker = f"AUTOEXEC_JOBID={job}"
    # a child of the tool too: the whole process group must go, not just the direct child
    token = "tok-" + uuid.uuid4().hex
    op = _op(job, ["sh", "-c", "sleep 30 & sleep 31; wait"], env={"AUTOEXEC_JOBID": job, "TOKEN": token})
    running = _Background(transports(_endpoint(sshd_pool)), op)
    wait_until(lambda: len(pids_with_env(marker)) >= 3, 5)
    assert _cmdlines_containing(token) == [], "env values must not be visible in the process list"
    cancelled_at = time.monotonic()
    running.cancel.set()
    result = running.join(5)
    assert result == RemoteResult(exit_code=None, error="aborted", kind=FailureKind.CANCELLED)
    assert running.finished_at - cancelled_at < 1.5
    wait_until(lambda: not pids_with_env(marker), 2 - (time.monotonic() - cancelled_at))
    assert not os.path.exists(op.root)


def test_kill_job_matches_exact_job_id_only(sshd_pool: SshdPool, transports) -> None:
    short = "9" + _job() + "123"
    longer = short + "4"  # shares the whole id as a prefix
    transport_short = transports(_endpoint(sshd_pool, 0))
    transport_long = transports(_endpoint(sshd_pool, 1))
    victim = _Background(transport_short, _op(short, ["sh", "-c", "sleep 30"]))
    bystander = _Background(transport_long, _op(longer, ["sh", "-c", f"echo {short}; sleep 30"]))
    wait_until(lambda: bool(pids_with_env(f"AUTOEXEC_JOBID={short}"))
                       and bool(pids_with_env(f"AUTOEXEC_JOBID={longer}")), 5)
    assert transports(_endpoint(sshd_pool, 2)).kill_job(short) is None
    assert victim.join(5).exit_code == 128 + signal.SIGKILL
    assert not pids_with_env(f"AUTOEXEC_JOBID={short}")
    assert pids_with_env(f"AUTOEXEC_JOBID={longer}") and bystander.result is None
    assert transport_long.kill_job(longer) is None
    assert bystander.join(5).exit_code == 128 + signal.SIGKILL


def test_kill_job_on_unreachable_host_returns_error_line(transports) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        error = transports(Endpoint("127.0.0.1", port, "u", "pw")).kill_job("42")
    assert error == f"ssh u@127.0.0.1:{port}: kill job 42 failed: connection refused"


# ------------------------------------------------------------------------------------ host keys


def test_host_key_policies(sshd_pool: SshdPool, transports, tmp_path: Path, monkeypatch) -> None:
    known = tmp_path / "known_hosts"
    monkeypatch.setenv("AUTOEXEC_SSH_KNOWN_HOSTS", str(known))
    monkeypatch.setenv("HOME", str(tmp_path))  # keep the real ~/.ssh/known_hosts out of it
    endpoint = _endpoint(sshd_pool)
    lines: list[str] = []

    strict = transports(endpoint, policy="reject").run(_op(_job(), ["true"]), lines.append, threading.Event())
    assert strict.exit_code is None and strict.error is not None and "not in known_hosts" in strict.error

    warned = transports(endpoint, policy="warn").run(_op(_job(), ["true"]), lines.append, threading.Event())
    assert warned.ok and len(lines) == 1 and lines[0].startswith("WARN: ") and "accepted" in lines[0]

    host_pub = (sshd_pool.workdir / "hostkey.pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{endpoint.port} {host_pub[0]} {host_pub[1]}\n")
    lines.clear()
    trusted = transports(endpoint, policy="reject").run(_op(_job(), ["true"]), lines.append, threading.Event())
    assert trusted.ok and lines == []

    other_key = (sshd_pool.workdir / "client_ed25519.pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{endpoint.port} {other_key[0]} {other_key[1]}\n")
    changed = transports(endpoint, policy="reject").run(_op(_job(), ["true"]), lines.append, threading.Event())
    assert changed.error is not None and "does not match known_hosts" in changed.error


def test_unknown_host_key_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="host_key_policy"):
        SshTransport(Endpoint("h", 22), Timeouts(), "accept-everything")


# ------------------------------------------------------------------------------------ handshake limiter


def test_limiter_lets_a_fan_out_through_a_stock_maxstartups_sshd(sshd_pool: SshdPool,
                                                                 sshd_default_limits: Sshd) -> None:
    """48 nodes behind one sshd with MaxStartups 10:30:100 (drops ~25% at 16 in flight, unlimited)."""
    limiter = HandshakeLimiter(per_destination=8, total=32)
    reset_handshake_limiter(limiter)
    endpoint = Endpoint("127.0.0.1", sshd_default_limits.port, sshd_pool.user,
                        private_key=str(sshd_pool.key_path("ed25519")))

    def one(_index: int) -> RemoteResult:
        transport = SshTransport(endpoint, Timeouts(connect=10, read=10, op=20))
        try:
            return transport.run(_op(_job(), ["true"]), lambda _l: None, threading.Event())
        finally:
            transport.close()

    try:
        with ThreadPoolExecutor(48) as pool:
            results = list(pool.map(one, range(48)))
    finally:
        reset_handshake_limiter(None)
    assert [r.error for r in results if not r.ok] == []
    assert 1 < limiter.peak("127.0.0.1", sshd_default_limits.port) <= 8


def test_limiter_bounds_in_flight_per_destination_and_total() -> None:
    limiter = HandshakeLimiter(per_destination=2, total=3)
    lock = threading.Lock()
    now = {"total": 0, "a": 0, "b": 0}
    peaks = {"total": 0, "a": 0, "b": 0}

    def handshake(dest: str) -> None:
        with limiter.slot(dest, 22):
            with lock:
                for key in ("total", dest):
                    now[key] += 1
                    peaks[key] = max(peaks[key], now[key])
            time.sleep(0.02)
            with lock:
                now["total"] -= 1
                now[dest] -= 1

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(handshake, ["a", "b"] * 10))
    assert peaks == {"total": 3, "a": 2, "b": 2}
    assert limiter.peak("a", 22) == 2


def test_cancel_while_queued_for_a_handshake_slot() -> None:
    limiter = HandshakeLimiter(per_destination=1, total=1)
    cancel = threading.Event()
    with limiter.slot("h", 22):
        cancel.set()
        transport_result = _queued_run(limiter, cancel)
    assert transport_result == RemoteResult(None, "aborted", kind=FailureKind.CANCELLED)


def _queued_run(limiter: HandshakeLimiter, cancel: threading.Event) -> RemoteResult:
    reset_handshake_limiter(limiter)
    try:
        return SshTransport(Endpoint("127.0.0.1", 9), FAST).run(_op(_job(), ["true"]), lambda _l: None, cancel)
    finally:
        reset_handshake_limiter(None)


def test_ops_the_transport_cannot_run_safely_are_refused(sshd_pool: SshdPool, transports) -> None:
    transport = transports(_endpoint(sshd_pool))
    for root in ("/", "/tmp", "relative/dir"):
        refused = transport.run(_op(_job(), ["true"], root=root), lambda _l: None, threading.Event())
        assert refused.exit_code is None and refused.error is not None and "refusing remote root" in refused.error
    assert transport.connections_opened == 0  # refused before touching the host
    job = _job()
    bad_env = transport.run(_op(job, ["true"], env={"AUTOEXEC_JOBID": job, "NOT-A-NAME": "x"}),
                            lambda _l: None, threading.Event())
    assert bad_env.error is not None and "invalid environment variable name 'NOT-A-NAME'" in bad_env.error


def test_run_command_timeout_kills_command_and_leaves_no_pid_file(sshd_pool: SshdPool, transports) -> None:
    job = _job()
    transport = transports(_endpoint(sshd_pool))
    lines: list[str] = []
    ok = transport.run_command(["sh", "-c", 'pwd; echo "$AUTOEXEC_JOBID"'], lines.append, threading.Event(),
                               env={"AUTOEXEC_JOBID": job})
    assert ok == RemoteResult(0) and lines == [pwd.getpwnam(sshd_pool.user).pw_dir, job]  # login directory
    before = set(os.listdir("/tmp"))
    timed_out = transport.run_command(["sleep", "30"], lines.append, threading.Event(),
                                      env={"AUTOEXEC_JOBID": job}, timeout=1)
    assert timed_out.error is not None and "op timeout of 1s" in timed_out.error
    wait_until(lambda: not pids_with_env(f"AUTOEXEC_JOBID={job}"), 2)
    mine = f".autoexec-cmd-{os.getpid()}-"  # other test sessions may be running commands too
    assert not [name for name in set(os.listdir("/tmp")) - before if name.startswith(mine)]


# ------------------------------------------------------------------------------------ inline staging
# Small uploads and the fetched files travel inside the one exec channel (transports/ssh_inline.py);
# SFTP remains the fallback. These pin the protocol's edge cases.


def _spy_sftp(transport: SshTransport, monkeypatch) -> list[str]:
    """Records every use of SFTP by ``transport``."""
    used: list[str] = []
    original = transport._sftp_client

    def spy(t):  # type: ignore[no-untyped-def]
        used.append("sftp")
        return original(t)

    monkeypatch.setattr(transport, "_sftp_client", spy)
    return used


def test_inline_staging_markers_in_tool_output_do_not_confuse_the_reader(sshd_pool: SshdPool, transports,
                                                                        tmp_path: Path, monkeypatch) -> None:
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 3 + b"\0\xff\xfe")
    text = tmp_path / "quote's \"$x\" `y`.txt"
    text.write_text("it's $HOME `id` \\n\nno newline at end")
    job = _job()
    tool = (
        # lines that look like markers, with a nonce the tool cannot know
        "echo 'AXM0123456789abcdef0123456789abcdef:R:0'; echo 'AXM0123456789abcdef0123456789abcdef:F:0'; "
        "echo ':X:tools'; cat 'quote'\\''s \"$x\" `y`.txt'; echo; cmp blob.bin blob.copy && echo same; "
        "cp blob.bin out.bin; printf '{\"a\": 1}' > output.json; printf 'partial'"
    )
    op = _op(job, ["sh", "-c", f"cp blob.bin blob.copy; {tool}"], workdir="w",
             uploads=[Upload(binary, "w/blob.bin"), Upload(binary, "w/blob.copy"), Upload(text, f"w/{text.name}")],
             create_empty=["output.json"], fetch=["output.json", "out.bin"], fetch_dir=tmp_path / "got")
    transport = transports(_endpoint(sshd_pool))
    used = _spy_sftp(transport, monkeypatch)
    lines: list[str] = []
    result = transport.run(op, lines.append, threading.Event())
    assert result.ok, (result, lines)
    assert lines == ["AXM0123456789abcdef0123456789abcdef:R:0", "AXM0123456789abcdef0123456789abcdef:F:0",
                     ":X:tools", "it's $HOME `id` \\n", "no newline at end", "same", "partial"]
    assert result.fetched["output.json"].read_text() == '{"a": 1}'
    assert result.fetched["out.bin"].read_bytes() == binary.read_bytes()
    assert used == [] and not os.path.exists(op.root)


def test_inline_fetch_second_round_brings_filepath_outputs_and_directories(sshd_pool: SshdPool, transports,
                                                                          tmp_path: Path, monkeypatch) -> None:
    import json

    def more(fetched: dict[str, Path]) -> list[str]:
        data = json.loads(fetched["output.json"].read_text())
        return [data["report"], data["tree"], data["odd"], "missing.txt"]

    op = _op(_job(), ["sh", "-c", "echo r > report.txt; mkdir -p tree/sub; echo leaf > tree/sub/leaf; "
                                  "printf 'x' > 'odd\nname'; echo working; "
                                  "printf '%s\\n' '{\"report\": \"report.txt\", \"tree\": \"tree\", "
                                  "\"odd\": \"odd\\nname\"}' > output.json"],
             fetch=["output.json"], fetch_more=more, fetch_dir=tmp_path / "got", create_empty=["output.json"])
    transport = transports(_endpoint(sshd_pool))
    used = _spy_sftp(transport, monkeypatch)
    lines: list[str] = []
    result = transport.run(op, lines.append, threading.Event())
    assert result.ok, (result, lines)
    assert lines == ["working"]
    assert result.fetched["report.txt"].read_text() == "r\n"
    assert (tmp_path / "got" / "tree" / "sub" / "leaf").read_text() == "leaf\n"  # a directory: via SFTP
    assert result.fetched["odd\nname"].read_text() == "x"  # a newline in the name: via SFTP
    assert "missing.txt" not in result.fetched
    assert used and not os.path.exists(op.root)


def test_inline_fetch_without_directories_needs_no_sftp(sshd_pool: SshdPool, transports, tmp_path: Path,
                                                        monkeypatch) -> None:
    op = _op(_job(), ["sh", "-c", "echo '{\"f\": \"f.txt\"}' > output.json; echo hi > f.txt"],
             fetch=["output.json"], fetch_more=lambda got: ["f.txt"], fetch_dir=tmp_path / "got")
    transport = transports(_endpoint(sshd_pool))
    used = _spy_sftp(transport, monkeypatch)
    result = transport.run(op, lambda _l: None, threading.Event())
    assert result.ok and result.fetched["f.txt"].read_text() == "hi\n"
    assert used == [] and not os.path.exists(op.root)


@pytest.mark.parametrize("reserve", [True, False])
def test_inline_failed_op_with_fetch_keeps_root_only_when_reserved(sshd_pool: SshdPool, transports, tmp_path: Path,
                                                                   job_roots: list[str], reserve: bool) -> None:
    script = tmp_path / "t.sh"
    script.write_text("echo partial > result.txt; exit 3\n")
    op = _op(_job(), ["sh", "t.sh"], workdir="b", uploads=[Upload(script, "b/t.sh", 0o700)],
             fetch=["output.json"], fetch_more=lambda got: [], fetch_dir=tmp_path / "got",
             create_empty=["output.json"], keep_dir_on_failure=reserve)
    job_roots.append(op.root)
    result = transports(_endpoint(sshd_pool)).run(op, lambda _l: None, threading.Event())
    assert result.exit_code == 3 and not result.ok and result.fetched == {}
    assert os.path.exists(f"{op.root}/b/result.txt") is reserve


def test_host_without_base64_falls_back_to_sftp(sshd_pool: SshdPool, transports, tmp_path: Path,
                                                monkeypatch) -> None:
    from autoexec.transports import ssh_inline

    monkeypatch.setattr(ssh_inline, "B64_TOOLS", ("autoexec-no-such-base64", "autoexec-no-such-openssl base64"))
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\0\1\2")
    transport = transports(_endpoint(sshd_pool))
    used = _spy_sftp(transport, monkeypatch)
    for _ in range(2):
        lines: list[str] = []
        op = _op(_job(), ["sh", "-c", "echo ran; od -An -tx1 b.bin | tr -d ' '; echo '{}' > output.json"],
                 uploads=[Upload(binary, "b.bin")], fetch=["output.json"], fetch_dir=tmp_path / "got",
                 create_empty=["output.json"])
        result = transport.run(op, lines.append, threading.Event())
        assert result.ok, (result, lines)
        assert lines == ["ran", "000102"]  # the command ran once, after the fallback
        assert result.fetched["output.json"].read_text() == "{}\n"
        assert not os.path.exists(op.root)
    assert transport._inline_ok is False and used  # remembered for the node's later ops


def test_text_only_uploads_need_no_base64_tool(sshd_pool: SshdPool, transports, tmp_path: Path, monkeypatch) -> None:
    from autoexec.transports import ssh_inline

    monkeypatch.setattr(ssh_inline, "B64_TOOLS", ("autoexec-no-such-base64",))
    script = tmp_path / "t.sh"
    script.write_text("echo text only\n")
    transport = transports(_endpoint(sshd_pool))
    used = _spy_sftp(transport, monkeypatch)
    lines: list[str] = []
    result = transport.run(_op(_job(), ["sh", "t.sh"], uploads=[Upload(script, "t.sh", 0o700)]),
                           lines.append, threading.Event())
    assert result.ok and lines == ["text only"] and used == []


def test_large_uploads_go_through_sftp_and_failed_staging_quotes_the_host(sshd_pool: SshdPool, transports, tmp_path: Path,
                                                                 job_roots: list[str], monkeypatch) -> None:
    from autoexec.transports import ssh_inline

    big = tmp_path / "big.txt"
    big.write_text("y" * 5000)
    monkeypatch.setattr(ssh_inline, "INLINE_LIMIT", 4096)
    transport = transports(_endpoint(sshd_pool))
    used = _spy_sftp(transport, monkeypatch)
    lines: list[str] = []
    result = transport.run(_op(_job(), ["wc", "-c", "big.txt"], uploads=[Upload(big, "big.txt")]),
                           lines.append, threading.Event())
    assert result.ok and lines == ["5000 big.txt"] and used == ["sftp"]
    # the root exists as a file: the op fails with the host's own message, naming the root
    op = _op(_job(), ["true"], uploads=[Upload(tmp_path / "big.txt", "x.txt")])
    monkeypatch.setattr(ssh_inline, "INLINE_LIMIT", 512 * 1024)
    Path(op.root).write_text("in the way")
    job_roots.append(op.root)
    result = transport.run(op, lambda _l: None, threading.Event())
    assert result.exit_code is None and result.error == (
        f"ssh {sshd_pool.user}@127.0.0.1:{sshd_pool.ports[0]}: cannot stage the op in {op.root}: "
        f"mkdir: cannot create directory '{op.root}': File exists")
    assert transport._inline_ok is True


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_inline_staging_sets_exact_modes_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    import subprocess
    import stat as stat_mod

    from autoexec.transports import ssh_inline

    src = tmp_path / "src"
    (src / "lib" / "sub").mkdir(parents=True)
    (src / "lib" / "a.py").write_text("a\n")
    (src / "lib" / "a.py").chmod(0o644)
    (src / "lib" / "sub" / "b.bin").write_bytes(b"\0b")
    (src / "lib" / "sub" / "b.bin").chmod(0o600)
    (src / "lib" / "sub").chmod(0o750)
    (src / "lib").chmod(0o755)
    (src / "t.sh").write_text("true\n")
    root = str(tmp_path / "remote" / "root")
    op = RemoteOp(job_id="j", root=root, uploads=[Upload(src / "lib", "lib"), Upload(src / "t.sh", "w/t.sh", 0o700)],
                  workdir="w", argv=["true"], env={}, create_empty=["out/output.json"])
    plan = ssh_inline.plan_inline(op, f"{root}/w")
    assert plan is not None
    script = ssh_inline.staging_script(plan, "AXMtest", ssh_inline.needs_b64(plan, op))
    done = subprocess.run(["sh", "-c", f"umask {umask:o}; " + 'eval "$(cat)"'], input=script.encode(),
                          capture_output=True, timeout=30)
    assert done.returncode == 0 and done.stdout == b"", done

    def mode(rel: str) -> int:
        return stat_mod.S_IMODE(os.stat(f"{root}/{rel}").st_mode)

    assert (mode("lib"), mode("lib/a.py"), mode("lib/sub"), mode("lib/sub/b.bin"), mode("w/t.sh")) == (
        0o755, 0o644, 0o750, 0o600, 0o700)
    assert Path(f"{root}/lib/sub/b.bin").read_bytes() == b"\0b"
    assert Path(f"{root}/w/out/output.json").read_bytes() == b""


def test_inline_second_round_callback_error_does_not_leave_the_host_waiting(sshd_pool: SshdPool, transports,
                                                                             tmp_path: Path) -> None:
    def more(_fetched: dict[str, Path]) -> list[str]:
        raise RuntimeError("bad output.json")

    op = _op(_job(), ["sh", "-c", "echo '{}' > output.json"], fetch=["output.json"], fetch_more=more,
             fetch_dir=tmp_path / "got")
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="bad output.json"):
        transports(_endpoint(sshd_pool)).run(op, lambda _l: None, threading.Event())
    assert time.monotonic() - start < 5
    wait_until(lambda: not os.path.exists(op.root), 3)  # the script went on to its cleanup
