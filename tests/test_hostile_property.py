"""Generated params and nodes files — valid structure with hostile values, and broken structure —
through the real command line. Whatever the input: exit 0, 1 or 2 only, never a traceback, nothing
written outside the job directory (and autoexec's own spool/log area), and exit 2 writes no status.

Most examples call :func:`autoexec.cli.command.main` in-process with a fresh ``AUTOEXEC_HOME`` (a process
per example would cost the suite minutes); a handful go through a real ``python`` subprocess. In
both, the detached Prefect recorder is not started (it imports Prefect, seconds of CPU per job, and
only replays the job's event spool, which the assertions here do not concern).
Fixed seed (``derandomize``), bounded example counts: the whole file stays well under a minute.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoexec.cli.command import main

JOB = "9090"
REPO = Path(__file__).resolve().parent.parent
SCRIPT = 'printf "%s\\n" "$@"; echo "host=$NODE_HOST"\n'  # the tool only echoes what it was given

# Text a console or a careless user could send: control characters, NUL, lone surrogates,
# separators, dot names, very long names, shell metacharacters, non-BMP characters.
_SPECIAL = st.sampled_from(["", ".", "..", "../../x", "/etc/passwd", "a/b", "\x00", "\ud800", "\udfff",
                            "\n", "\r\n", "$(id)", "`id`", "'\"", "\\", "=", "A=B", "%s", "\u202e", "😀",
                            "x" * 300, "é" * 150, "\x7f", "-", "--help", "{RC4}zz", "{ENCRYPTED}00"])
HOSTILE = st.one_of(_SPECIAL, st.text(max_size=12), st.text(st.characters(codec=None), max_size=8))
INTS = st.one_of(st.integers(-3, 3), st.sampled_from([2**31, 2**63, -(2**63), 10**30]))
SCALAR: st.SearchStrategy[Any] = st.one_of(HOSTILE, INTS, st.none(), st.booleans(), st.floats(allow_nan=True))


def _op(op_id: Any, opt: dict[Any, Any]) -> dict[str, Any]:
    return {"opId": op_id, "opName": "t", "opType": "runner_target", "isScript": 1, "interpreter": "bash",
            "scriptContent": SCRIPT, "opt": opt, "desc": {k: "text" for k in opt if isinstance(k, str)}}


@st.composite
def sometimes(draw: st.DrawFn, good: Any, bad: st.SearchStrategy[Any]) -> Any:
    """Mostly the good value, one time in four a hostile one: most jobs get far enough to run."""
    return draw(bad) if draw(st.integers(0, 3)) == 0 else good


@st.composite
def valid_shape_params(draw: st.DrawFn) -> dict[str, Any]:
    opt = {draw(sometimes("a", HOSTILE)): draw(sometimes("value", SCALAR)),
           draw(sometimes("pw", HOSTILE)): draw(sometimes("{RC4}0a1b", SCALAR))}
    op = _op(draw(sometimes("t_1", HOSTILE)), opt)
    op.update({"opName": draw(sometimes("t", st.one_of(st.sampled_from(["basic/echo", "native/setenv", "a/../../b"]),
                                                       HOSTILE))),
               "interpreter": draw(sometimes("bash", st.one_of(st.sampled_from(["sh", "python", "perl", "cmd"]),
                                                               HOSTILE))),
               "isScript": draw(sometimes(1, st.sampled_from([0, "0", None, True]))),
               "opType": draw(sometimes("runner_target", st.one_of(st.sampled_from(["native", "runner"]), HOSTILE)))})
    phase = {"phaseName": draw(sometimes("p", HOSTILE)),
             "phaseType": draw(sometimes("runner_target", st.one_of(st.sampled_from(["runner", None]), HOSTILE))),
             "operations": [op]}
    params: dict[str, Any] = {"runFlow": [{"groupNo": draw(sometimes(0, INTS)), "phases": [phase]}]}
    if draw(st.booleans()):
        params["environment"] = {draw(sometimes("E1", HOSTILE)): draw(sometimes("v", SCALAR))}
    if draw(st.booleans()):
        params["opt"] = {draw(sometimes("O1", HOSTILE)): draw(sometimes("v", SCALAR))}
    return params


@st.composite
def valid_shape_nodes(draw: st.DrawFn) -> str:
    lines = [json.dumps({"totalCount": draw(sometimes(1, INTS)), "localRunnerId": 1, "jobRunnerIds": [1]})]
    for i in range(draw(st.integers(1, 2))):
        node = {"resourceId": draw(sometimes(10 + i, INTS)), "runnerId": draw(sometimes(1, INTS)),
                "host": draw(sometimes(f"10.0.0.{i}", HOSTILE)), "port": draw(sometimes(22, SCALAR)),
                "protocol": draw(sometimes("ssh", HOSTILE)), "username": draw(sometimes("u", HOSTILE)),
                "password": draw(sometimes("pw-secret", HOSTILE))}
        lines.append(json.dumps(node))  # ensure_ascii: surrogates and NUL arrive as \u escapes
    return "\n".join(lines) + "\n"


JSON = st.recursive(st.one_of(st.none(), st.booleans(), INTS, HOSTILE),
                    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(HOSTILE, kids, max_size=3)),
                    max_leaves=8)


@st.composite
def broken_file(draw: st.DrawFn, good: str) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "truncate", "deep", "splice"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    if kind == "deep":
        depth = draw(st.integers(50, 3000))
        return ("[" * depth + "]" * depth).encode()
    raw = good.encode()
    cut = draw(st.integers(0, max(0, len(raw) - 1)))
    if kind == "truncate":
        return raw[:cut]
    return raw[:cut] + draw(st.binary(min_size=1, max_size=8)) + raw[cut:]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _allowed(rel: str) -> bool:
    """What a run may create under the example's root: its job dir, autoexec's spool and logs, and
    the tools' scratch dir ``$AUTOEXEC_HOME/tmp`` (made by autoexec, never named by the input)."""
    job = f"home/data/job/{JOB[:3]}/{JOB[3:]}"
    parents = ("home", "home/data", "home/prefect", "home/logs", "home/tmp", "home/data/job", f"home/data/job/{JOB[:3]}", job)
    return rel in parents or rel.startswith((job + "/", "home/prefect/spool", "home/logs/"))


@contextlib.contextmanager
def _isolated(root: Path) -> Iterator[None]:
    """A CLI run in this process: its own home and cwd; environment and signal handlers restored."""
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)}
    os.environ["AUTOEXEC_PREFECT_RECORD"] = "0"  # the spool only: no recorder process per example
    os.environ["AUTOEXEC_HOME"] = str(root / "home")
    os.environ["AUTOEXEC_OUTBOX_FLUSH_SECS"] = "1"
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)


def _check(root: Path, code: int, err: str) -> None:
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err, err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
        status = root / "home" / "data" / "job" / JOB[:3] / JOB[3:] / "status"
        assert not status.exists() or not any(p.is_file() for p in status.rglob("*")), err
    job_log = root / "home" / "data" / "job" / JOB[:3] / JOB[3:] / "log"
    for log in job_log.rglob("*.txt") if job_log.is_dir() else ():
        assert "Traceback" not in log.read_text(errors="replace"), (log, log.read_text(errors="replace"))
    outside = {rel for rel in _files(root) - {"params.json", "nodes.jsonl"} if not _allowed(rel)}
    assert not outside, (outside, err)


def _write(root: Path, params: bytes, nodes: bytes) -> None:
    (root / "params.json").write_bytes(params)
    (root / "nodes.jsonl").write_bytes(nodes)


def _in_process(params: bytes, nodes: bytes) -> None:
    root = Path(tempfile.mkdtemp(prefix="ae-prop-"))
    try:
        _write(root, params, nodes)
        err, out = io.StringIO(), io.StringIO()
        with _isolated(root), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(["--devmode", "--jobid", JOB, "--paramsfile", "params.json", "--nodesfile", "nodes.jsonl"])
            except SystemExit as exc:  # argparse
                code = int(exc.code or 0)
        _check(root, code, err.getvalue())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _dump(params: dict[str, Any]) -> bytes:
    return json.dumps(params).encode()  # ensure_ascii: hostile code points arrive as \u escapes


GOOD_PARAMS = json.dumps({"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner_target",
                                                                 "operations": [_op("t_1", {})]}]}]})
GOOD_NODES = '{"totalCount": 1}\n{"resourceId": 1, "runnerId": 1, "host": "h", "protocol": "ssh"}\n'
SETTINGS: dict[str, Any] = {"derandomize": True, "deadline": None, "database": None,
                            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


@settings(max_examples=200, **SETTINGS)  # type: ignore[arg-type]
@given(params=valid_shape_params(), nodes=valid_shape_nodes())
def test_hostile_values_in_a_valid_shape(params: dict[str, Any], nodes: str) -> None:
    _in_process(_dump(params), nodes.encode())


@settings(max_examples=150, **SETTINGS)  # type: ignore[arg-type]
@given(params=broken_file(GOOD_PARAMS), nodes=st.one_of(st.just(GOOD_NODES.encode()), broken_file(GOOD_NODES)))
def test_broken_structure(params: bytes, nodes: bytes) -> None:
    _in_process(params, nodes)


# A handful through a real process: the command line, its exit code and stderr as a caller sees them.
_SUBPROCESS = "import sys; from autoexec.cli.command import entry; sys.argv[0] = 'autoexec'; entry()"


@settings(max_examples=8, **SETTINGS)  # type: ignore[arg-type]
@given(params=st.one_of(valid_shape_params().map(_dump), broken_file(GOOD_PARAMS)), nodes=valid_shape_nodes())
def test_subprocess_examples(params: bytes, nodes: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="ae-prop-"))
    try:
        _write(root, params, nodes.encode())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AUTOEXEC_"))}
        env.update(AUTOEXEC_HOME=str(root / "home"), AUTOEXEC_OUTBOX_FLUSH_SECS="1", AUTOEXEC_PREFECT_RECORD="0",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
        proc = subprocess.run([sys.executable, "-c", _SUBPROCESS, "--devmode", "--jobid", JOB,
                               "--paramsfile", "params.json", "--nodesfile", "nodes.jsonl"],
                              cwd=root, env=env, capture_output=True, text=True, errors="replace", timeout=120,
                              check=False)
        _check(root, proc.returncode, proc.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_generators_reach_every_outcome() -> None:
    """The generated inputs are not all refused: some run (exit 0), some are refused (exit 2)."""
    codes = set()
    for params, nodes in ((GOOD_PARAMS.encode(), GOOD_NODES.encode()), (b"\xff", GOOD_NODES.encode())):
        root = Path(tempfile.mkdtemp(prefix="ae-prop-"))
        try:
            _write(root, params, nodes)
            with _isolated(root), contextlib.redirect_stderr(io.StringIO()):
                codes.add(main(["--devmode", "--jobid", JOB, "-p", "params.json", "-n", "nodes.jsonl"]))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    assert codes == {0, 2}


pytestmark = pytest.mark.timeout(600)
