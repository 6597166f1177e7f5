"""Whole RemoteOps through TagentTransport against the test agent, and its failure modes."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from autoexec.transports.base import Endpoint, FailureKind, RemoteOp, RemoteResult, RemoteTransport, Timeouts, Upload
from autoexec.transports.tagent import TagentTransport
from autoexec.transports.tagent_client import TagentClient
from tests.procs import pids_with_env
from tests.tagent_agent import TagentTestAgent
from tests.waiting import wait_until

FAST = Timeouts(connect=2.0, read=5.0, write=2.0, op=30.0)
TOOL = """#!/bin/sh
echo "first"
echo "second" >&2
for a in "$@"; do printf 'arg=[%s]\\n' "$a"; done
echo "env=[$AUTOEXEC_JOBID]"
printf '{"outtext": "done"}' > output.json
echo "last"
"""


def transport(agent: TagentTestAgent, password: str | None = None, timeouts: Timeouts = FAST) -> TagentTransport:
    endpoint = Endpoint("127.0.0.1", agent.port, password=password or agent.password, charset=None)
    return TagentTransport(endpoint, timeouts)


def make_op(tmp_path: Path, argv: list[str], **kwargs: object) -> RemoteOp:
    job = kwargs.pop("job_id", f"t{uuid.uuid4().hex[:10]}")
    fields: dict[str, object] = dict(job_id=job, root=f"$TMPDIR/autoexec-{job}-7-0", uploads=[], workdir="",
                                     argv=argv, env={"AUTOEXEC_JOBID": str(job)})
    fields.update(kwargs)
    return RemoteOp(**fields)  # type: ignore[arg-type]


def run(t: TagentTransport, op: RemoteOp, cancel: threading.Event | None = None) -> tuple[RemoteResult, list[str]]:
    lines: list[str] = []
    return t.run(op, lines.append, cancel or threading.Event()), lines


def bundle(tmp_path: Path, script: str = TOOL) -> tuple[Path, Path]:
    lib = tmp_path / "local" / "lib"
    (lib / "deep" / "er").mkdir(parents=True)
    (lib / "helper.sh").write_text("helper\n")
    (lib / "deep" / "er" / "data.bin").write_bytes(bytes(range(256)))
    tool = tmp_path / "local" / "tool.sh"
    tool.write_text(script, encoding="utf-8")
    return lib, tool


def test_transport_satisfies_protocol(tagent_agent: TagentTestAgent) -> None:
    assert isinstance(transport(tagent_agent), RemoteTransport)
    assert tagent_agent.password not in repr(transport(tagent_agent))


def test_full_op_uploads_streams_fetches_and_cleans(tagent_agent_any: TagentTestAgent, tmp_path: Path) -> None:
    agent = tagent_agent_any
    lib, tool = bundle(tmp_path)
    fetch_dir = tmp_path / "fetched"
    odd_args = ["$HOME", "`id`", "it's \"quoted\"", "$TMPDIR/x", "a b", ""]
    op = make_op(tmp_path, ["./tool.sh", *odd_args], workdir="mybundle",
                 uploads=[Upload(lib, "lib"), Upload(tool, "mybundle/tool.sh", mode=0o700)],
                 fetch=["output.json", "missing.json"], fetch_dir=fetch_dir, create_empty=["output.json"])
    result, lines = run(transport(agent), op)
    assert result.ok, result
    assert lines == ["first", "second", *[f"arg=[{a}]" for a in odd_args], f"env=[{op.job_id}]", "last"]
    assert json.loads((fetch_dir / "output.json").read_text()) == {"outtext": "done"}
    assert result.fetched == {"output.json": fetch_dir / "output.json"}
    assert not list(Path(agent.tmpdir).iterdir()), "remote root must be removed after success"
    # the directory tree arrived intact (checked via the agent's own record of the upload targets)
    assert any(r[1] == b"upload" and r[3] == b"dir" for r in agent.requests)


def test_uploaded_tree_is_complete(tagent_agent: TagentTestAgent, tmp_path: Path) -> None:
    lib, _ = bundle(tmp_path)
    op = make_op(tmp_path, ["sh", "-c", "cat helper.sh; od -An -tx1 deep/er/data.bin | tr -d ' \\n' | head -c 16"],
                 workdir="lib", uploads=[Upload(lib, "lib")])
    result, lines = run(transport(tagent_agent), op)
    assert result.ok and lines == ["helper", "0001020304050607"]


def test_nonzero_exit_is_returned_exactly_and_dir_kept_on_request(tagent_agent: TagentTestAgent,
                                                                   tmp_path: Path) -> None:
    op = make_op(tmp_path, ["sh", "-c", "echo before; exit 42"], keep_dir_on_failure=True, fetch=["x"],
                 fetch_dir=tmp_path / "f")
    result, lines = run(transport(tagent_agent), op)
    assert (result.exit_code, result.error, lines, result.fetched) == (42, None, ["before"], {})
    assert [p.name for p in Path(tagent_agent.tmpdir).iterdir()] == [f"autoexec-{op.job_id}-7-0"]
    op2 = make_op(tmp_path, ["sh", "-c", "exit 3"])
    assert run(transport(tagent_agent), op2)[0].exit_code == 3
    assert not (Path(tagent_agent.tmpdir) / f"autoexec-{op2.job_id}-7-0").exists()


def test_gbk_agent_output_and_script_conversion(tagent_agent_gbk: TagentTestAgent, tmp_path: Path) -> None:
    _, tool = bundle(tmp_path, "#!/bin/sh\necho '中文输出'\nprintf '%s\\n' \"$1\"\n")
    op = make_op(tmp_path, ["./tool.sh", "参数"], uploads=[Upload(tool, "tool.sh", mode=0o755)])
    result, lines = run(transport(tagent_agent_gbk), op)
    assert result.ok, result
    assert lines == ["中文输出", "参数"]
    # the agent received GBK bytes, proving the client encoded for the agent, not in UTF-8
    execmd = [r for r in tagent_agent_gbk.requests if r[1] == b"execmd"][-2]
    assert "参数".encode("gbk") in execmd[3]


def test_wrong_password_is_a_clear_error(tagent_agent_any: TagentTestAgent, tmp_path: Path) -> None:
    started = time.monotonic()
    result, _ = run(transport(tagent_agent_any, password="Wrong-Secret-9"), make_op(tmp_path, ["true"]))
    assert result.exit_code is None and "credential rejected" in (result.error or "")
    assert "Wrong-Secret-9" not in (result.error or "") and time.monotonic() - started < 2


def test_nothing_listening(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    t = TagentTransport(Endpoint("127.0.0.1", port, password="x-secret"), FAST)
    started = time.monotonic()
    result, _ = run(t, make_op(tmp_path, ["true"]))
    assert result.exit_code is None and "refused" in (result.error or "")
    assert time.monotonic() - started < 1 and "\n" not in (result.error or "")


@pytest.mark.parametrize("mid_chunk", [False, True])
def test_agent_stalling_mid_stream_hits_read_timeout(tagent_agent: TagentTestAgent, tmp_path: Path,
                                                     mid_chunk: bool) -> None:
    tagent_agent.stall_after_lines, tagent_agent.stall_mid_chunk = 1, mid_chunk
    t = transport(tagent_agent, timeouts=Timeouts(connect=2, read=1.0, write=2, op=30))
    started = time.monotonic()
    result, lines = run(t, make_op(tmp_path, ["sh", "-c", "echo one; echo two; sleep 20"]))
    assert lines == ["one"]
    assert result.exit_code is None and "read timeout" in (result.error or "")
    assert 0.9 < time.monotonic() - started < 3


def test_oversize_request_is_refused(tagent_agent: TagentTestAgent, tmp_path: Path) -> None:
    op = make_op(tmp_path, ["true"])
    op.env["BIG"] = "x" * 70000
    result, _ = run(transport(tagent_agent), op)
    assert result.exit_code is None and "65535-byte frame limit" in (result.error or "")


def test_command_exceeding_op_timeout(tagent_agent: TagentTestAgent, tmp_path: Path) -> None:
    started = time.monotonic()
    result, _ = run(transport(tagent_agent), make_op(tmp_path, ["sleep", "20"], timeout=1))
    assert result.exit_code is None and "timeout" in (result.error or "")
    assert time.monotonic() - started < 3


def test_cancel_aborts_promptly_and_kills_the_command(tagent_agent: TagentTestAgent, tmp_path: Path) -> None:
    op = make_op(tmp_path, ["sh", "-c", "echo started; sleep 30"])
    cancel = threading.Event()
    lines: list[str] = []
    out: list[RemoteResult] = []
    worker = threading.Thread(target=lambda: out.append(transport(tagent_agent).run(op, lines.append, cancel)))
    worker.start()
    for _ in range(100):
        if lines:
            break
        time.sleep(0.05)
    assert lines == ["started"], "the command must be running before the cancel, or the kill check proves nothing"
    started = time.monotonic()
    cancel.set()
    worker.join(25)
    took = time.monotonic() - started
    # the command would run 30 s: ending well before that is the cancel's doing, on a loaded machine too
    assert out == [RemoteResult(exit_code=None, error="aborted", kind=FailureKind.CANCELLED)], out
    assert took < 20, took
    wait_until(lambda: pids_with_env(f"AUTOEXEC_JOBID={op.job_id}") == [], 10, "the op's processes to be killed")


def test_kill_job_matches_the_exact_job_id_only(tagent_agent: TagentTestAgent) -> None:
    base = f"9{uuid.uuid4().int % 10**8}"
    victim = subprocess.Popen(["sleep", "30"], env={**os.environ, "AUTOEXEC_JOBID": base})
    longer = subprocess.Popen(["sleep", "30"], env={**os.environ, "AUTOEXEC_JOBID": base + "4"})
    on_cmdline = subprocess.Popen(["sh", "-c", f"sleep 30 # AUTOEXEC_JOBID={base}"])
    try:
        assert transport(tagent_agent).kill_job(base) is None
        assert victim.wait(timeout=3) == -9
        time.sleep(0.2)
        assert longer.poll() is None and on_cmdline.poll() is None
    finally:
        for proc in (victim, longer, on_cmdline):
            proc.kill()
            proc.wait()


def test_client_misc_commands(tagent_agent_secure: TagentTestAgent, tmp_path: Path) -> None:
    client = TagentClient("127.0.0.1", tagent_agent_secure.port, tagent_agent_secure.password, read_timeout=5)
    assert client.echo("ping 中") == "ping 中"
    marker = tmp_path / "async-done"
    client.execmd_async(f"sleep 0.2; touch {marker}")
    wait_until(marker.exists, 10, "the async command to finish")
    client.update_cred("New-Cred-77")
    client.reload()
    assert TagentClient("127.0.0.1", tagent_agent_secure.port, "New-Cred-77", read_timeout=5).echo("x") == "x"
