"""What the ``autoexec`` command shows an operator: a live view on a real terminal (a pty), plain
phase lines and the same summary when its output is captured; console.txt unchanged by either."""
from __future__ import annotations

import io

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoexec.cli.progress import NodeEnd, PlainView, last_error_line
from tests.fixtures_core import JobFiles, cli_env, nodes_lines, run_runtime, script_op

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")

# n1 finishes last although it is dispatched first; n2 fails with its own error line
SCRIPT = ('case "$NODE_NAME" in n1) sleep 1.5;; n2) echo "disk /data is 97% full"; exit 7;; esac\n'
          'echo "done on $NODE_NAME"\n')


def _job(jobs: JobFiles) -> tuple[Path, Path]:
    params = {"runFlow": [{"groupNo": 0, "phases": [
        {"phaseName": "work", "phaseType": "runner_target",
         "operations": [script_op("work_1", SCRIPT, "runner_target")], "maxFailCount": 1}]}]}
    params_path, nodes_path = jobs.write(params, nodes_lines(3))
    assert nodes_path is not None
    return params_path, nodes_path


def _cli_env(jobs: JobFiles) -> dict[str, str]:
    # the job's detached Prefect recorder finds no API and gives up: these tests are about the terminal
    return dict(cli_env(jobs.home), PREFECT_API_URL="http://127.0.0.1:9/api")


def _argv(job_id: str, params: Path, nodes: Path) -> list[str]:
    return [sys.executable, "-m", "autoexec.cli.command", "--devmode", "--jobid", job_id, "--firstfire",
            "--paramsfile", str(params), "--nodesfile", str(nodes)]


def _run_on_pty(argv: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    env = dict(env, TERM="xterm-256color", COLUMNS="160", LINES="40")
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    data = b""
                if not data and proc.poll() is not None:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_terminal_shows_live_phases_completions_in_finish_order_and_the_failed_nodes(jobs: JobFiles) -> None:
    params, nodes = _job(jobs)
    code, raw = _run_on_pty(_argv("901", params, nodes), _cli_env(jobs))
    text = ANSI.sub("", raw).replace("\r", "\n")
    assert code == 1, text
    # the live bar: done/total, failed, running, elapsed
    assert "━" in raw and re.search(r"work\s.*\d/3 \d failed \d running \d:\d\d:\d\d", text), text
    order = [m.group(1) for m in re.finditer(r"[✔✘] work/(\S+) (?:succeed|failed)", text)]
    assert order[-1] == "10.1.0.1-22-101", order  # the slow first node is reported when it ends, last
    assert "✘ work/10.1.0.2-22-102 failed" in text and "exit 7" in text
    assert "Failed and aborted nodes" in text
    table = text[text.index("Failed and aborted nodes"):]
    assert "10.1.0.2-22-102" in table and "disk /data is 97% full" in table and "7" in table
    assert "10.1.0.1-22-101" not in table
    console = jobs.home / "data/job/901/log/console.txt"
    assert f"Console log: {console}" in text.replace("\n", "") or str(console) in text
    # console.txt keeps the original's lines, in node order, without terminal codes
    lines = console.read_text()
    assert "\x1b" not in lines and "━" not in lines
    assert re.search(r"^\d\d:\d\d:\d\d INFO: Node\(101\) 10.1.0.1:22 execute succeed\.$", lines, re.M)
    assert lines.index("Node(101) 10.1.0.1:22 execute succeed") < lines.index("Node(103) 10.1.0.3:22 execute succeed")


def test_captured_output_gets_one_line_per_phase_end_and_the_same_summary(jobs: JobFiles) -> None:
    params, nodes = _job(jobs)
    proc = subprocess.run(_argv("902", params, nodes), env=_cli_env(jobs), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "\x1b" not in out and "━" not in out
    assert re.search(r"^autoexec: phase work: failed, 3/3 done, 1 failed, [\d.]+s$", out, re.M), out
    assert re.search(r"^autoexec: job 902 failed after [\d.]+s \(1 failed, 2 succeed\)", out, re.M), out
    row = next(line for line in out.splitlines() if "10.1.0.2-22-102" in line)
    assert "failed" in row and " 7 " in row and "disk /data is 97% full" in row
    assert "log/work/10.1.0.2-22-102.txt" in row
    assert f"Console log: {jobs.home}/data/job/902/log/console.txt" in out


def test_plain_view_summarises_failed_and_aborted_nodes_with_their_last_error(tmp_path: Path) -> None:
    log = tmp_path / "log" / "p" / "h-22-1.txt"
    log.parent.mkdir(parents=True)
    log.write_text("10:00:00 ======[1]h:22 Launched by ssh://u@h:22======\n10:00:00 ------START--[a_1] local\n"
                   "10:00:01 connection refused by backend\n10:00:01 ERROR: Execute operation a on runner failed.\n"
                   "10:00:01 ------END--[a_1] done\n")
    assert last_error_line(str(log)) == "connection refused by backend"

    out = io.StringIO()

    view = PlainView("7", str(tmp_path), str(tmp_path / "log/console.txt"), out=out)
    view.phase_started(0, "p", 2)
    view.node_started("p", "h-22-1")
    view.node_finished(NodeEnd("p", "h-22-1", "h:22", "aborted", 1.0, None, "aborted", str(log)))
    view.node_finished(NodeEnd("p", "h-22-2", "h:22", "succeed", 1.0, 0, "", ""))
    view.phase_finished("p", "aborted")
    view.close("aborted")
    assert "autoexec: phase p: aborted, 2/2 done, 1 failed" in out.getvalue()
    assert re.search(r"p\s+h-22-1\s+aborted\s+aborted \| connection refused by backend", out.getvalue()), out.getvalue()
    assert "h-22-2" not in out.getvalue().split("Failed and aborted")[1]


def test_bundled_examples_run_without_warnings(jobs: JobFiles) -> None:
    """Only the warnings a node's outcome calls for (an ignored failure), no input warnings."""
    from tests.fixtures_core import EXAMPLES

    for n, name in enumerate(("demo", "fail", "failignore")):
        params = json.loads((EXAMPLES / name / "params.json").read_text())
        rt, _ = jobs.run(f"100{n}", params, (EXAMPLES / name / "nodes.jsonl").read_text(), first_fire=True)
        warnings = [line for line in rt.jobdir.console_log.read_text().splitlines()
                    if " WARN: " in line and " WARN: Node(" not in line]
        assert warnings == [], (name, warnings)


def test_verbose_plain_view_echoes_the_console_log(tmp_path: Path) -> None:
    quiet, loud = io.StringIO(), io.StringIO()
    PlainView("7", str(tmp_path), "c.txt", out=quiet).console_line("INFO: Begin to execute phase:p operations...")
    PlainView("7", str(tmp_path), "c.txt", verbose=True, out=loud).console_line("INFO: Begin to execute phase:p operations...")
    assert quiet.getvalue() == "" and loud.getvalue() == "INFO: Begin to execute phase:p operations...\n"


def test_the_view_reads_the_event_stream_also_for_batch_phases_and_skipped_nodes(
        jobs: JobFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One channel: the view is a sink of the engine's event stream beside the record's; a phase
    recorded as one batch and nodes skipped as already done still reach it node by node."""
    from autoexec.engine.run import ListSink, Tee

    monkeypatch.setenv("AUTOEXEC_NODE_TASKS_MAX", "1")  # every phase of more than one node is a batch

    out = io.StringIO()

    op = script_op("x_1", '[ "$NODE_NAME" != n2 ] || { echo "n2 is broken"; exit 5; }\n', "runner_target")
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "work", "phaseType": "runner_target",
                                                      "operations": [op]}]}]}
    rt = jobs.runtime("905", params, nodes_lines(3))
    view = PlainView(rt.job_id, str(rt.jobdir.root), str(rt.jobdir.console_log), out=out)
    sink = ListSink()
    outcome = run_runtime(rt, Tee(sink, view))
    rt.console.close()
    view.close(outcome.status, outcome.message)
    assert outcome.status == "failed" and "batch_node_end" in [e["event"] for e in sink.events]
    assert re.search(r"^autoexec: phase work: failed, 3/3 done, 1 failed, ", out.getvalue(), re.M), out.getvalue()
    [row] = [line for line in out.getvalue().splitlines() if "10.1.0.2-22-102" in line]
    assert " 5 " in row and "n2 is broken" in row
    out.seek(0)
    out.truncate()
    rerun = jobs.runtime("905", None, None, force=False)
    view = PlainView(rerun.job_id, str(rerun.jobdir.root), str(rerun.jobdir.console_log), out=out)
    run_runtime(rerun, view)
    rerun.console.close()
    view.close("failed", "")
    # n1 and n3 had succeeded: skipped (and counted as done); n2 runs again and fails again
    assert re.search(r"^autoexec: phase work: failed, 3/3 done, 1 failed, ", out.getvalue(), re.M), out.getvalue()
    assert "(1 failed, 2 skipped)" in out.getvalue()
