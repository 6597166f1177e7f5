"""Runner-side children (autoexec.transports.local/spawn/orphans/deadlines): what Popen gave
before — own session, no inherited descriptors, exact env/cwd/argv, kill and time limits, exit
codes, error messages — on both start paths (glibc posix_spawn and the Popen fallback), and the
line splitting of the chunked reader."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from autoexec.transports import deadlines, orphans, spawn
from autoexec.transports.decoding import LineSplitter
from autoexec.transports.local import LocalProcess, pump
from tests.fixtures_core import process_running
from tests.waiting import wait_until

PY = sys.executable


@pytest.fixture(params=["posix_spawn", "popen"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "posix_spawn":
        if spawn._LIBC is None:
            pytest.skip("no glibc posix_spawn with addchdir_np/addclosefrom_np here")
    else:
        monkeypatch.setattr(spawn, "_LIBC", None)
    yield request.param


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float | None = None) -> tuple[list[str], object, LocalProcess]:
    proc = LocalProcess(argv, cwd, env if env is not None else dict(os.environ))
    lines: list[str] = []
    result = proc.stream(lines.append, timeout=timeout)
    return lines, result, proc


# --- the chunked reader ------------------------------------------------------------------
def _pump_bytes(pieces: list[bytes], read_size: int = 65536) -> list[list[str]]:
    read_fd, write_fd = os.pipe()
    batches: list[list[str]] = []

    def feed() -> None:
        for piece in pieces:
            os.write(write_fd, piece)
            time.sleep(0.02)  # separate reads
        os.close(write_fd)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        pump(read_fd, batches.append, read_size)
    finally:
        writer.join()
        os.close(read_fd)
    return batches


def test_a_line_split_across_reads_is_delivered_once_complete() -> None:
    batches = _pump_bytes([b"first\nsec", b"ond half", b" end\nthird\n"])
    assert batches == [["first"], ["second half end", "third"]]


def test_the_last_line_without_newline_is_delivered_at_eof() -> None:
    assert _pump_bytes([b"a\nno newline"]) == [["a"], ["no newline"]]
    assert _pump_bytes([b"only"]) == [["only"]]
    assert _pump_bytes([]) == []


def test_small_reads_still_cut_the_same_lines() -> None:
    data = b"alpha\r\nbeta\n\ngamma\r\r\n" + "中文".encode() + b"\nend"
    got = [line for batch in _pump_bytes([data], read_size=3) for line in batch]
    assert got == ["alpha", "beta", "", "gamma", "中文", "end"]


def test_gbk_and_broken_bytes_are_decoded_per_line() -> None:
    gbk = "你好".encode("gbk")
    splitter = LineSplitter()
    assert splitter.feed(b"utf8 \xe4\xb8\xad\n" + b"gbk " + gbk + b"\n" + b"bad \xff\r") == ["utf8 中", "gbk 你好"]
    assert splitter.flush() == ["bad \ufffd"]
    assert LineSplitter().feed(b"x\r\n") == ["x"]


# --- starting, env, cwd, descriptors -------------------------------------------------------
def test_child_gets_exact_argv_env_cwd_and_devnull_stdin(backend: str, tmp_path: Path) -> None:
    script = ("import json, os, sys\n"
              "print(json.dumps({'argv': sys.argv, 'env': list(os.environ.items()), 'cwd': os.getcwd(),"
              "'stdin': os.readlink('/proc/self/fd/0'), 'stdout': os.readlink('/proc/self/fd/1'),"
              "'stderr': os.readlink('/proc/self/fd/2')}))\n")
    env = {"PATH": os.environ["PATH"], "B": "2", "A": "1", "ODD": "sp ace=eq\u00e9"}
    lines, result, _ = _run(["python3", "-c", script, "x y", "--z"], tmp_path, env)
    assert result.exit_code == 0 and result.error is None
    data = json.loads(lines[0])
    assert data["argv"] == ["-c", "x y", "--z"]
    assert [(k, v) for k, v in data["env"] if k != "LC_CTYPE"] == list(env.items())  # order kept
    assert data["cwd"] == str(tmp_path)
    assert data["stdin"] == "/dev/null" and data["stdout"] == data["stderr"] and data["stdout"].startswith("pipe:")


def test_child_has_its_own_session_and_no_stray_descriptors(backend: str, tmp_path: Path) -> None:
    inheritable = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(inheritable, True)  # close_fds must close even this one
    try:
        script = "import os\nprint(os.getpid(), os.getpgid(0), os.getsid(0))\nprint(sorted(os.listdir('/proc/self/fd')))"
        lines, result, proc = _run([PY, "-c", script], tmp_path)
    finally:
        os.close(inheritable)
    pid, pgid, sid = map(int, lines[0].split())
    assert pid == proc.pid == pgid == sid != os.getpgid(0)
    assert lines[1] in ("['0', '1', '2', '3']", "['0', '1', '2']")  # 3: listdir's own descriptor
    assert result.exit_code == 0


def test_stdout_and_stderr_interleave_in_one_stream(backend: str, tmp_path: Path) -> None:
    lines, result, _ = _run(["sh", "-c", "echo out; echo err >&2; echo out2"], tmp_path)
    assert lines == ["out", "err", "out2"]


def test_exit_codes_and_signals_as_popen(backend: str, tmp_path: Path) -> None:
    assert _run(["sh", "-c", "exit 3"], tmp_path)[1].exit_code == 3
    assert _run(["sh", "-c", "kill -TERM $$"], tmp_path)[1].exit_code == -signal.SIGTERM


def test_sigpipe_is_back_to_default_in_the_child(backend: str, tmp_path: Path) -> None:
    lines, result, _ = _run(["sh", "-c", "yes | head -n 2; echo done"], tmp_path)
    assert lines == ["y", "y", "done"] and result.exit_code == 0


def test_missing_program_or_cwd_raise_like_popen(backend: str, tmp_path: Path) -> None:
    with pytest.raises(OSError) as err:
        LocalProcess(["no-such-program-xyz"], tmp_path, dict(os.environ))
    assert err.value.strerror == "No such file or directory"
    with pytest.raises(OSError) as err:
        LocalProcess([str(tmp_path / "missing")], tmp_path, dict(os.environ))
    assert err.value.strerror == "No such file or directory"
    with pytest.raises(OSError) as err:
        LocalProcess(["sh", "-c", "true"], tmp_path / "nodir", dict(os.environ))
    assert err.value.strerror == "No such file or directory"
    with pytest.raises(ValueError):
        LocalProcess(["sh", "-c", "true"], tmp_path, {"A=B": "1", "PATH": os.environ["PATH"]})


def test_program_is_found_on_the_childs_path_relative_entries_from_its_cwd(backend: str, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "mytool"
    tool.write_text("#!/bin/sh\necho mine $0\n")
    tool.chmod(0o755)
    env = {"PATH": f"bin:{os.environ['PATH']}"}
    lines, result, _ = _run(["mytool"], tmp_path, env)
    assert lines == ["mine bin/mytool"] and result.exit_code == 0


def test_kill_stops_the_whole_group(backend: str, tmp_path: Path) -> None:
    marker = tmp_path / "grandchild"
    proc = LocalProcess(["sh", "-c", f"sleep 60 & echo $! > {marker}; wait"], tmp_path, dict(os.environ))
    lines: list[str] = []
    threading.Timer(0.3, proc.kill).start()
    started = time.monotonic()
    result = proc.stream(lines.append)
    assert time.monotonic() - started < 5
    assert result.killed and result.error == "aborted" and result.exit_code is None
    grandchild = int(marker.read_text())
    wait_until(lambda: not process_running(grandchild), 5, "the grandchild to be killed")
    proc.kill()  # again: harmless


def test_time_limit_kills_and_says_so(backend: str, tmp_path: Path) -> None:
    lines, result, _ = _run(["sh", "-c", "echo started; sleep 30"], tmp_path, timeout=0.5)
    assert lines == ["started"]
    assert result.killed and result.error == "timed out after 0.5s, process group killed"


def test_a_sink_that_raises_leaves_no_zombie(backend: str, tmp_path: Path) -> None:
    proc = LocalProcess(["sh", "-c", "echo a; sleep 0.3"], tmp_path, dict(os.environ))

    def sink(line: str) -> None:
        raise RuntimeError("log gone")

    with pytest.raises(RuntimeError):
        proc.stream(sink)
    wait_until(lambda: proc.returncode is not None, 5, "the child to be reaped")
    assert not process_running(proc.pid)


# --- orphans ------------------------------------------------------------------------------
def test_children_die_with_a_sigkilled_runner(tmp_path: Path) -> None:
    """The runner is SIGKILLed while its tool (and the tool's own child) run: both are killed."""
    marker = tmp_path / "pids"
    code = (
        "import os, signal, sys, time\n"
        "from autoexec.transports.local import LocalProcess\n"
        f"p = LocalProcess(['sh', '-c', 'sleep 60 & echo $$ $! > {marker}.tmp; mv {marker}.tmp {marker}; wait'], "
        f"{str(tmp_path)!r}, dict(os.environ))\n"
        f"while not os.path.exists({str(marker)!r}): time.sleep(0.02)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    runner = subprocess.run([PY, "-c", code], cwd=str(Path(__file__).resolve().parents[2]), timeout=30)
    assert runner.returncode == -signal.SIGKILL
    pids = [int(p) for p in marker.read_text().split()]
    wait_until(lambda: not any(process_running(p) for p in pids), 10, "the children of the killed runner to die")


def test_a_killed_watcher_is_replaced(tmp_path: Path) -> None:
    assert orphans.available()
    watcher = orphans._watcher._proc
    assert watcher is not None
    watcher.kill()
    watcher.wait()
    lines, result, _ = _run(["sh", "-c", "echo ok"], tmp_path)
    assert lines == ["ok"] and result.exit_code == 0
    assert orphans.available() and orphans._watcher._proc is not None and orphans._watcher._proc.poll() is None


def test_setpriv_is_the_fallback_without_a_watcher(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from autoexec.transports import local

    if not local._PDEATHSIG:
        pytest.skip("setpriv not installed")
    monkeypatch.setattr(orphans, "available", lambda: False)
    started: list[list[str]] = []
    real_spawn = local.spawn

    def recording_spawn(argv, executable, cwd, env):  # type: ignore[no-untyped-def]
        started.append(list(argv))
        return real_spawn(argv, executable, cwd, env)

    monkeypatch.setattr(local, "spawn", recording_spawn)
    lines, result, _ = _run(["sh", "-c", "echo $0"], tmp_path)
    assert lines == ["sh"] and result.exit_code == 0
    assert started == [local._PDEATHSIG + ["sh", "-c", "echo $0"]]


# --- deadlines ----------------------------------------------------------------------------
def test_deadlines_fire_in_order_and_cancelled_ones_never() -> None:
    fired: list[str] = []
    done = threading.Event()
    deadlines.call_later(0.2, lambda: (fired.append("late"), done.set()))
    deadlines.call_later(0.05, lambda: fired.append("early"))
    deadlines.call_later(0.1, lambda: fired.append("cancelled")).cancel()
    assert done.wait(5)
    time.sleep(0.05)
    assert fired == ["early", "late"]


def test_many_cancelled_deadlines_do_not_pile_up() -> None:
    for _ in range(1000):
        deadlines.call_later(3600, lambda: None).cancel()
    assert len(deadlines._scheduler._heap) < 200
