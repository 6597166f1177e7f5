"""SshTransport against real hosts that are not all alike: noisy login shells, dash, no base64,
an unwritable or full ``/tmp``, processes left writing, ``MaxSessions 1``, dropped connections.

Every fetched file is compared byte for byte; what the target prints around the op must never
change it, and a failure must say why in one line."""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import pytest

from autoexec.transports.base import Endpoint, RemoteOp, RemoteResult, Timeouts, Upload
from autoexec.transports.ssh import SshTransport
from tests.procs import pids_with_env
from tests.sshd_pool import Account, Sshd, SshdPool
from tests.tcp_proxy import TcpProxy
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FAST = Timeouts(connect=10, read=20, write=10, op=60)
TOOL = """echo "tool out 1"
echo "tool err 1" >&2
printf '%s' "$1" > result.bin
head -c 3000 /dev/urandom > blob.bin
printf '{"result": "result.bin", "blob": "blob.bin", "arg": "%s"}' "$2" > output.json
echo "tool out 2"
echo "tool err 2" >&2
exit 0
"""


def _job() -> str:
    return uuid.uuid4().hex[:12]


def _endpoint(port: int, account: Account | None = None, pool: SshdPool | None = None) -> Endpoint:
    if account is not None:
        return Endpoint("127.0.0.1", port, account.name, account.password)
    assert pool is not None
    return Endpoint("127.0.0.1", port, pool.user, pool.password)


def _tool_op(tmp_path: Path, payload: str = "payload with 'quotes' and\nnewline", **kw: object) -> RemoteOp:
    """A bash tool run as a login shell (as remote script ops are), writing an output.json that
    names two more files to fetch in a second round."""
    job = _job()
    script = tmp_path / f"tool-{job}.sh"
    script.write_text(TOOL)

    def more(fetched: dict[str, Path]) -> list[str]:
        data = json.loads(fetched["output.json"].read_text())
        return [data["result"], data["blob"]]

    values: dict[str, object] = dict(
        job_id=job, root=f"/tmp/autoexec-{job}-1-0", uploads=[Upload(script, "w/tool.sh", 0o700)],
        workdir="w", argv=["bash", "-l", "tool.sh", payload, "x"], env={"AUTOEXEC_JOBID": job},
        fetch=["output.json"], fetch_more=more, fetch_dir=tmp_path / f"got-{job}", create_empty=["output.json"])
    values.update(kw)
    return RemoteOp(**values)  # type: ignore[arg-type]


def _check_tool_op(op: RemoteOp, result: RemoteResult, lines: list[str],
                   payload: str = "payload with 'quotes' and\nnewline") -> None:
    assert result.ok, (result, lines)
    assert json.loads(result.fetched["output.json"].read_text()) == {"result": "result.bin", "blob": "blob.bin",
                                                                     "arg": "x"}
    assert result.fetched["result.bin"].read_bytes() == payload.encode()
    assert len(result.fetched["blob.bin"].read_bytes()) == 3000
    # each stream's lines keep their order
    assert [line for line in lines if line.startswith("tool out")] == ["tool out 1", "tool out 2"]
    assert [line for line in lines if line.startswith("tool err")] == ["tool err 1", "tool err 2"]
    assert not [line for line in lines if "AXM" in line], lines
    assert not os.path.exists(op.root)


@pytest.fixture
def transports() -> Iterator[Callable[..., SshTransport]]:
    made: list[SshTransport] = []

    def make(endpoint: Endpoint, timeouts: Timeouts = FAST) -> SshTransport:
        made.append(SshTransport(endpoint, timeouts))
        return made[-1]

    yield make
    for transport in made:
        transport.close()


def _run(transport: SshTransport, op: RemoteOp) -> tuple[RemoteResult, list[str]]:
    lines: list[str] = []
    return transport.run(op, lines.append, threading.Event()), lines


# ------------------------------------------------------------------------------------ login shells


def test_noisy_login_shell_never_touches_fetched_files(sshd_pool: SshdPool, noisy_account: Account,
                                                       transports, tmp_path: Path) -> None:
    """Profile, .bashrc and .bash_logout print on stdout and stderr at start and exit; 24 ops at
    once over 4 sshd, 2 ops per connection."""
    def node(index: int) -> list[tuple[RemoteOp, RemoteResult, list[str]]]:
        transport = transports(_endpoint(sshd_pool.ports[index % len(sshd_pool.ports)], noisy_account))
        done = []
        for _ in range(2):
            op = _tool_op(tmp_path)
            done.append((op, *_run(transport, op)))
        return done

    with ThreadPoolExecutor(12) as pool:
        runs = [item for batch in pool.map(node, range(12)) for item in batch]
    for op, result, lines in runs:
        _check_tool_op(op, result, lines)
    noise = runs[0][2]
    assert "profile says hi" in noise and "logout warns" in noise  # the noise is real, and shown


def test_dash_login_shell(sshd_pool: SshdPool, dash_account: Account, transports, tmp_path: Path) -> None:
    transport = transports(_endpoint(sshd_pool.ports[1], dash_account))
    assert _run(transport, _op_shell_name())[1] == ["dash"]  # /bin/sh is dash here
    op = _tool_op(tmp_path)
    result, lines = _run(transport, op)
    _check_tool_op(op, result, lines)


def _op_shell_name() -> RemoteOp:
    job = _job()
    # the exec channel's own shell is the account's login shell: ask it for its name
    return RemoteOp(job_id=job, root=f"/tmp/autoexec-{job}-1-0", uploads=[], workdir="",
                    argv=["sh", "-c", 'basename "$(readlink -f /proc/$PPID/exe)"'], env={"AUTOEXEC_JOBID": job})


# ------------------------------------------------------------------------------------ missing tools, /tmp


def test_host_without_base64_fetches_over_sftp(sshd_pool: SshdPool, sshd_no_base64: Sshd, no_base64_account: Account,
                                               transports, tmp_path: Path) -> None:
    transport = transports(_endpoint(sshd_no_base64.port, no_base64_account))
    probe = _run(transport, RemoteOp(job_id="p", root=f"/tmp/autoexec-{_job()}-1-0", uploads=[], workdir="",
                                     argv=["sh", "-c", "command -v base64 openssl || echo none"],
                                     env={"AUTOEXEC_JOBID": "p"}))
    assert probe[0].ok and probe[1][-1] == "none"
    binary = tmp_path / "b.bin"
    binary.write_bytes(bytes(range(256)))
    for _ in range(2):
        op = _tool_op(tmp_path, uploads=[Upload(tmp_path / "b.bin", "w/b.bin"),
                                         *_tool_op(tmp_path).uploads])
        result, lines = _run(transport, op)
        _check_tool_op(op, result, lines)
    assert transport._inline_ok is False


@pytest.mark.parametrize("kind,reason,sftp_reason", [("readonly", "Permission denied", "(/tmp is not writable)"),
                                                     ("full", "No space left on device", "has 0 KiB free)")])
def test_unusable_tmp_is_one_clear_line_naming_the_dir(sshd_pool: SshdPool, request: pytest.FixtureRequest,
                                                       transports, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       kind: str, reason: str, sftp_reason: str) -> None:
    from autoexec.transports import ssh_inline

    server: Sshd = request.getfixturevalue(f"sshd_tmp_{kind}")
    transport = transports(_endpoint(server.port, pool=sshd_pool))
    for op in (_tool_op(tmp_path), _tool_op(tmp_path, uploads=[])):  # with and without files to ship
        result, lines = _run(transport, op)
        assert result.exit_code is None and result.error is not None, (result, lines, server.log_text())
        assert result.error.startswith(f"ssh {sshd_pool.user}@127.0.0.1:{server.port}: "
                                       f"cannot stage the op in {op.root}: ")
        assert reason in result.error and "\n" not in result.error
        assert not (server.tmp / Path(op.root).name).exists()  # nothing half-staged left behind
    monkeypatch.setattr(ssh_inline, "INLINE_LIMIT", 16)  # big uploads go over SFTP
    op = _tool_op(tmp_path)
    result, lines = _run(transport, op)
    assert result.exit_code is None and result.error is not None, (result, lines)
    assert f"upload to {op.root} failed" in result.error and result.error.endswith(sftp_reason), result.error


# ------------------------------------------------------------------------------------ left-behind writers


def test_process_left_writing_after_the_op_does_not_hold_or_garble_it(sshd_pool: SshdPool, noisy_account: Account,
                                                                      transports, tmp_path: Path) -> None:
    """The tool leaves a process that floods stdout with base64-looking lines and stderr with
    text while the fetched files travel back; they still arrive byte for byte."""
    blob = os.urandom(200_000)
    (tmp_path / "blob.src").write_bytes(blob)
    flood = ("( i=0; while [ $i -lt 100000 ]; do echo QUJDRA; echo 'left behind' >&2; i=$((i+1)); done ) & "
             "cp blob.src out.bin; printf '{\"f\": \"out.bin\"}' > output.json; echo done")
    transport = transports(_endpoint(sshd_pool.ports[2], noisy_account))
    for _ in range(3):
        job = _job()
        op = RemoteOp(job_id=job, root=f"/tmp/autoexec-{job}-1-0", uploads=[Upload(tmp_path / "blob.src", "blob.src")],
                      workdir="", argv=["sh", "-c", flood], env={"AUTOEXEC_JOBID": job}, fetch=["output.json"],
                      fetch_more=lambda got: ["out.bin"], fetch_dir=tmp_path / f"got-{job}",
                      create_empty=["output.json"])
        started = time.monotonic()
        result, lines = _run(transport, op)
        assert result.ok, (result, lines[-5:])
        assert result.fetched["out.bin"].read_bytes() == blob
        assert result.fetched["output.json"].read_text() == '{"f": "out.bin"}'
        assert "done" in lines
        assert time.monotonic() - started < 30


def test_silent_process_left_holding_the_channel_does_not_hold_the_op(sshd_pool: SshdPool, transports) -> None:
    job = _job()
    op = RemoteOp(job_id=job, root=f"/tmp/autoexec-{job}-1-0", uploads=[], workdir="",
                  argv=["sh", "-c", "sleep 60 & echo started-daemon"], env={"AUTOEXEC_JOBID": job})
    started = time.monotonic()
    result, lines = _run(transports(_endpoint(sshd_pool.ports[3], pool=sshd_pool)), op)
    took = time.monotonic() - started
    assert result.ok and lines[0] == "started-daemon"
    assert lines[-1].startswith("WARN: the command left a process running that holds its output open")
    assert took < 15  # not the read timeout (20 s) nor the op timeout (60 s)


# ------------------------------------------------------------------------------------ MaxSessions 1


def test_max_sessions_one(sshd_pool: SshdPool, sshd_one_session: Sshd, transports, tmp_path: Path) -> None:
    transport = transports(_endpoint(sshd_one_session.port, pool=sshd_pool))
    op = _tool_op(tmp_path)
    _check_tool_op(op, *_run(transport, op))
    # a fetched directory needs SFTP, then the root's removal and the next op need exec channels
    job = _job()
    tree = RemoteOp(job_id=job, root=f"/tmp/autoexec-{job}-1-0", uploads=[], workdir="",
                    argv=["sh", "-c", "mkdir -p d/e && echo leaf > d/e/f"], env={"AUTOEXEC_JOBID": job},
                    fetch=["d"], fetch_dir=tmp_path / "tree")
    result, lines = _run(transport, tree)
    assert result.ok, (result, lines)
    assert (tmp_path / "tree" / "d" / "e" / "f").read_text() == "leaf\n" and not os.path.exists(tree.root)
    # a timeout kills the command over a second connection (the first has no channel to spare)
    job = _job()
    slow = RemoteOp(job_id=job, root=f"/tmp/autoexec-{job}-1-0", uploads=[], workdir="", timeout=2,
                    argv=["sh", "-c", "sleep 30"], env={"AUTOEXEC_JOBID": job})
    result, _ = _run(transport, slow)
    assert result.error is not None and "op timeout of 2s" in result.error
    op = _tool_op(tmp_path)
    _check_tool_op(op, *_run(transport, op))
    assert transport.connections_opened == 1


# ------------------------------------------------------------------------------------ dropped connections


@pytest.fixture
def proxy(sshd_pool: SshdPool) -> Iterator[TcpProxy]:
    made = TcpProxy(("127.0.0.1", sshd_pool.ports[0]))
    made.up()
    yield made
    made.down()


def _long_op() -> RemoteOp:
    job = _job()
    return RemoteOp(job_id=job, root=f"/tmp/autoexec-{job}-1-0", uploads=[], workdir="",
                    argv=["sh", "-c", "echo started; sleep 60"], env={"AUTOEXEC_JOBID": job})


def _run_and_cut(transport: SshTransport, proxy: TcpProxy, op: RemoteOp) -> RemoteResult:
    lines: list[str] = []
    out: list[RemoteResult] = []
    worker = threading.Thread(target=lambda: out.append(transport.run(op, lines.append, threading.Event())))
    worker.start()
    wait_until(lambda: "started" in lines, 20)
    proxy.cut()
    worker.join(30)
    assert out, "the op did not end after its connection was cut"
    return out[0]


def test_connection_dropped_mid_op_kills_it_and_removes_its_dir(sshd_pool: SshdPool, proxy: TcpProxy,
                                                                transports) -> None:
    transport = transports(Endpoint("127.0.0.1", proxy.port, sshd_pool.user, sshd_pool.password))
    op = _long_op()
    result = _run_and_cut(transport, proxy, op)
    assert result.exit_code is None and result.error is not None
    assert "connection lost" in result.error and f"{op.root} removed over a new connection" in result.error
    assert not os.path.exists(op.root)
    wait_until(lambda: not pids_with_env(f"AUTOEXEC_JOBID={op.job_id}"), 5)


def test_dir_left_by_a_dropped_connection_is_named_then_removed_at_the_next_contact(
        sshd_pool: SshdPool, proxy: TcpProxy, transports) -> None:
    transport = transports(Endpoint("127.0.0.1", proxy.port, sshd_pool.user, sshd_pool.password),
                           Timeouts(connect=2, read=20, write=10, op=60))
    warm_up = _long_op()
    warm_up.argv = ["true"]
    assert transport.run(warm_up, lambda _l: None, threading.Event()).ok  # the connection is up
    op = _long_op()
    proxy.refuse = True  # the host cannot be reached again for now (the live connection still works)
    result = _run_and_cut(transport, proxy, op)
    assert result.error is not None and f"{op.root} left on the host" in result.error
    assert "removed at the node's next connection" in result.error
    assert os.path.exists(op.root)
    proxy.refuse = False
    follow_up = _long_op()
    follow_up.argv = ["true"]
    assert transport.run(follow_up, lambda _l: None, threading.Event()).ok
    assert not os.path.exists(op.root)
    wait_until(lambda: not pids_with_env(f"AUTOEXEC_JOBID={op.job_id}"), 5)


def test_kill_job_through_a_noisy_login_shell(sshd_pool: SshdPool, noisy_account: Account, transports) -> None:
    """The kill command's report is found among what ``.bashrc`` prints around it."""
    job = _job()
    op = RemoteOp(job_id=job, root=f"/tmp/autoexec-{job}-1-0", uploads=[], workdir="",
                  argv=["sh", "-c", "echo started; sleep 60"], env={"AUTOEXEC_JOBID": job})
    lines: list[str] = []
    out: list[RemoteResult] = []
    worker = threading.Thread(target=lambda: out.append(
        transports(_endpoint(sshd_pool.ports[0], noisy_account)).run(op, lines.append, threading.Event())))
    worker.start()
    wait_until(lambda: "started" in lines, 20)
    assert transports(_endpoint(sshd_pool.ports[1], noisy_account)).kill_job(job) is None
    worker.join(20)
    assert out and out[0].exit_code == 137
    assert not pids_with_env(f"AUTOEXEC_JOBID={job}")
