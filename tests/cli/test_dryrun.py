"""``autoexec --dryrun``: what a run would do, resolved as far as it can be, with nothing run,
connected or written."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from autoexec.cli.command import main
from autoexec.conf.secrets import encrypt_secret
from tests.fixtures_core import EXAMPLES, JobFiles, nodes_lines, script_op

KEY = "dry-run-password-key"


def _files(root: Path) -> list[str]:
    """Files under ``root``, but config.ini's lock (every CLI start encrypts plaintext secrets in place)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "config.ini.lock")


def test_dry_run_prints_every_phase_node_and_argv_and_writes_nothing(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    (jobs.home / "conf").mkdir()
    (jobs.home / "conf" / "config.ini").write_text(f"[server]\npassword.key = {KEY}\n")
    secret = encrypt_secret("Hush-Pw-99", KEY, "{RC4}")
    remote = {"opId": "cmd_1", "opName": "basic/cmdrun", "opType": "target", "opt": {"cmd": "uptime; df -h"},
              "desc": {"cmd": "text"}, "retries": 2, "retryDelay": 5}
    params = {"roundCount": 2, "opt": {"release": "r7"}, "maxFailPercent": 50, "runFlow": [
        {"groupNo": 0, "phases": [{"phaseName": "build", "phaseType": "runner", "operations": [
            script_op("mk_1", "echo\n", "runner", opt={"pw": secret, "rel": "${release}"},
                      desc={"pw": "password", "rel": "text"})]}]},
        {"groupNo": 1, "execStrategy": "grayScale", "phases": [
            {"phaseName": "ship", "phaseType": "target", "operations": [remote]}]}]}
    params_path, nodes_path = jobs.write(params, nodes_lines(3))
    before = _files(jobs.home)
    assert main(["--devmode", "--dryrun", "--jobid", "880", "--paramsfile", str(params_path),
                 "--nodesfile", str(nodes_path)]) == 0
    out = capsys.readouterr().out
    assert _files(jobs.home) == before and not (jobs.home / "data").exists()  # no job dir, status, pid, console log
    assert not (jobs.home / "prefect").exists()  # no Prefect record
    assert "Hush-Pw-99" not in out, out
    assert "--pw '******'" in out and "--rel r7" in out
    assert "Group 0: oneShot" in out and "Phase build: on the runner (local-0-0), tolerates 50% failed" in out
    assert "Group 1: grayScale, 2 round(s) of 2, 1 node(s)" in out
    assert "Round 1/2: 101, 102" in out and "Round 2/2: 103" in out
    assert "cmd_1 basic/cmdrun [on 10.1.0.1 over ssh] (retried up to 2x, 5s apart)" in out
    assert "argv: ./cmdrun --cmd 'uptime; df -h'" in out
    assert "remote directory /tmp/autoexec-880-101-1 (removed after the op), working directory /tmp/autoexec-880-101-1/basic" in out
    assert "upload " in out and "-> /tmp/autoexec-880-101-1/basic" in out


def test_dry_run_finds_tools_as_a_run_does(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    """An executable without a descriptor is the tool; a descriptor alone hides a later executable."""
    own = jobs.home / "plugins" / "local" / "basic"
    own.mkdir(parents=True)
    (own / "mine").write_text("#!/bin/sh\n")
    (own / "echo.json").write_text('{"opType": "runner"}')
    ops = [{"opId": f"{name}_1", "opName": f"basic/{name}", "opType": "runner"} for name in ("mine", "echo")]
    params_path, _ = jobs.write({"runFlow": [{"groupNo": 0, "phases": [
        {"phaseName": "p", "phaseType": "runner", "operations": ops}]}]})
    assert main(["--devmode", "--dryrun", "--jobid", "884", "--paramsfile", str(params_path)]) == 0
    out = capsys.readouterr().out
    assert f"argv: {own / 'mine'}" in out
    assert f"argv: <Plugin not exists basic/echo (only its descriptor {own / 'echo.json'}" in out


def test_dry_run_resolves_what_earlier_runs_produced_and_shows_what_would_be_skipped(
        jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    make = script_op("make_1", 'echo \'{"ver": "v9"}\' > "$OUTPUT_PATH"\n', "runner_target", output={"ver": {"type": "text"}})
    use = script_op("use_1", "echo\n", "runner_target", arg=[{"type": "text", "value": "${first.make_1.ver}"}])
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "first", "phaseType": "runner_target", "operations": [make]}]},
                          {"groupNo": 1, "phases": [{"phaseName": "second", "phaseType": "runner_target", "operations": [use]}]}]}
    argv = ["--devmode", "--dryrun", "--jobid", "881"]
    params_path, nodes_path = jobs.write(params, nodes_lines(1))
    assert main([*argv, "--paramsfile", str(params_path), "--nodesfile", str(nodes_path)]) == 0
    assert "not resolvable before the run: Can not resolve param ${first.make_1.ver}" in capsys.readouterr().out
    jobs.run("881", params, nodes_lines(1), phases={"first"})
    status_files = _files(jobs.home / "data/job/881/status")
    assert main(argv) == 0  # the job directory's own inputs now
    out = capsys.readouterr().out
    assert "10.1.0.1-22-101: skipped, status succeed (use --force to re-run)" in out
    assert "argv: bash" in out and out.rstrip().endswith("v9")
    assert _files(jobs.home / "data/job/881/status") == status_files


def test_dry_run_of_bad_input_is_the_runs_one_line_error(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    bad = jobs.tmp / "p.json"
    bad.write_text(json.dumps({"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "maxFailCount": -1}]}]}))
    assert main(["--devmode", "--dryrun", "--jobid", "882", "--paramsfile", str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "runFlow[0].phases[0].maxFailCount" in err
    assert not os.path.exists(jobs.home / "data")


def test_bundled_demo_dry_run_covers_all_groups(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--devmode", "--dryrun", "--jobid", "883", "--paramsfile", str(EXAMPLES / "demo/params.json"),
                 "--nodesfile", str(EXAMPLES / "demo/nodes.jsonl")]) == 0
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("Group")] == ["Group 0", "Group 1", "Group 2"]
