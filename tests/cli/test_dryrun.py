"""``autoexec --dryrun``: what a run would do, resolved as far as it can be, with nothing run,
connected or written."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from autoexec.cli.command import main
from autoexec.cli.dryrun import dry_run
from autoexec.engine.groups import plan_phase
from autoexec.load.loader import JobRequest, build_runtime
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


def _nodes(net: int, count: int = 2) -> str:
    """A nodes file whose hosts (10.<net>.0.<i>) say which source a run took its nodes from."""
    lines = [json.dumps({"jobRunnerIds": [1], "localRunnerId": 1, "totalCount": count})]
    lines += [json.dumps({"resourceId": net * 100 + i, "runnerId": 1, "host": f"10.{net}.0.{i}", "port": 22,
                          "nodeName": f"n{i}", "protocol": "ssh", "protocolPort": 22, "username": "u",
                          "password": "pw"}) for i in range(1, count + 1)]
    return "\n".join(lines) + "\n"


def _job(phase: str, run_node: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": phase, "phaseType": "runner_target",
                                                                     "operations": [script_op("op_1", "echo\n", "runner_target")]}]}]}
    if run_node is not None:
        params["runNode"] = [json.loads(line) for line in run_node.splitlines()[1:]]
    return params


def _dry_plan(req: JobRequest) -> set[tuple[str, str]]:
    """(phase, node) pairs the dry run prints."""
    out = io.StringIO()
    assert dry_run(req, out) == 0
    found, phase = set(), ""
    for line in out.getvalue().splitlines():
        text = line.strip()
        if text.startswith("Phase "):
            phase = text[len("Phase "):].split(":")[0]
        elif text.startswith("10."):
            found.add((phase, text.split()[0]))
    return found


def _run_plan(req: JobRequest) -> set[tuple[str, str]]:
    """(phase, node) pairs a run plans, from the job dir the run prepared."""
    rt = build_runtime(req)
    try:
        return {(phase.phaseName, node.triple) for group in rt.params.runFlow
                for index, phase in enumerate(group.phases, 1)
                for node in plan_phase(rt, group, phase, index, None).nodes}
    finally:
        rt.console.close()


def test_dry_run_and_run_take_inputs_from_the_same_source(jobs: JobFiles) -> None:
    """Inline wins over a given file, a file over the job dir's copy, params runNode over all
    nodes, and a job's own group lists replace the job dir's per-group and per-phase files: the
    dry run and the run resolve this in one place (``resolve_inputs``), so they agree."""
    data = jobs.home / "data" / "job"

    def job_dir(job_id: str, phase: str, nodes: str, **lists: str) -> None:
        root = data / job_id
        root.mkdir(parents=True)
        (root / "params.json").write_text(json.dumps(_job(phase)))
        (root / "nodes.json").write_text(nodes)
        for name, text in lists.items():
            (root / f"{name}.json").write_text(text)

    file_params, file_nodes = jobs.write(_job("file"), _nodes(2), name="given")
    cases = [  # request, the phase and the hosts' net the run must use
        (dict(job_id="701"), "jobdir", 9),
        (dict(job_id="702", params_file=str(file_params), nodes_file=str(file_nodes)), "file", 2),
        (dict(job_id="703", params=_job("inline"), params_file=str(file_params), nodes=_nodes(3),
              nodes_file=str(file_nodes)), "inline", 3),
        (dict(job_id="704", params=_job("own", run_node=_nodes(4)), nodes=_nodes(3)), "own", 4),
        (dict(job_id="705", group_nodes={"0": _nodes(5, 1)}), "jobdir", 5),
    ]
    for request, phase, net in cases:
        job_id = str(request["job_id"])
        job_dir(job_id, "jobdir", _nodes(9), **({"nodes-gp-0": _nodes(6), "nodes-ph-jobdir": _nodes(7)}
                                                if job_id == "705" else {}))
        req = JobRequest(dev_mode=True, **request)  # type: ignore[arg-type]
        before = _files(jobs.home)
        dry = _dry_plan(req)
        assert _files(jobs.home) == before, job_id  # the dry run wrote nothing
        assert dry and {p for p, _ in dry} == {phase} and all(n.startswith(f"10.{net}.0.") for _, n in dry), (job_id, dry)
        assert _run_plan(req) == dry, job_id


def test_production_dry_run_says_what_a_run_would_download_first(jobs: JobFiles) -> None:
    """The console-download rules of a production run (``console_gives_params``/``_nodes``,
    ``brings_own_nodes``), told instead of done: a dry run downloads nothing."""
    root = jobs.home / "data" / "job" / "710"
    root.mkdir(parents=True)
    (root / "params.json").write_text(json.dumps(_job("p")))
    (root / "nodes.json").write_text(_nodes(1))
    _, nodes_file = jobs.write(_job("p"), _nodes(2), name="own")

    def said(**request: Any) -> str:
        out = io.StringIO()
        assert dry_run(JobRequest(job_id="710", dev_mode=False, **request), out) == 0
        return out.getvalue()

    first = said(first_fire=True)
    assert "refresh its params and nodes from the console first" in first and "Nodes: the copies there are now" in first
    again = said()
    assert "Inputs:" not in again and "Nodes: the copies there are now" in again
    own = said(first_fire=True, nodes_file=str(nodes_file))
    assert "refresh its params from the console first" in own and "Nodes:" not in own and "10.2.0.1" in own
