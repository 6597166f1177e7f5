"""The command line as the runner service drives it: flags, errors and helper modes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoexec.cli.command import build_parser, main
from tests.fixtures_core import JobFiles, cli_env, nodes_lines, script_op
from tests.waiting import wait_until

ORIGINAL_FLAGS = ["-v", "--jobid", "--execuser", "--paramsfile", "--nodesfile", "--force", "--firstfire", "--abort",
                  "--pause", "--register", "--cleanstatus", "--purgejobdata", "--devmode", "--nofirenext",
                  "--passthroughenv", "--phasegroups", "--phases", "--nodes", "--sqlfiles", "-j", "-u", "-p", "-n",
                  "-f", "-i", "-k", "-s", "-r", "-c", "-d"]


def test_help_lists_every_flag_of_the_original() -> None:
    text = build_parser().format_help()
    for flag in ORIGINAL_FLAGS:
        assert f"{flag} " in text or f"{flag}," in text or f"{flag}\n" in text, flag


def test_unknown_flag_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--bogus"])
    assert exc.value.code == 2


def test_malformed_params_one_line_exit_2_and_nothing_written(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    bad = jobs.tmp / "params.json"
    bad.write_text('{"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "operations": [{"opId": 1}]}]}]}')
    code = main(["--devmode", "--jobid", "5", "--paramsfile", str(bad)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and str(bad) in err and "operations[0]" in err
    assert_only_an_empty_lock_file(jobs.home / "data/job/5")


def test_malformed_nodes_file_names_the_line(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    params, nodes = jobs.write({"runFlow": []}, nodes_lines(2) + '{"resourceId": 9}\n')
    code = main(["--devmode", "--jobid", "6", "--paramsfile", str(params), "--nodesfile", str(nodes)])
    err = capsys.readouterr().err
    assert code == 2 and "line 4: field runnerId" in err
    assert_only_an_empty_lock_file(jobs.home / "data/job/6")


def assert_only_an_empty_lock_file(job_dir: Path) -> None:
    """Bad input: the job's lock file (taken before loading) is all there is, and it says nobody runs."""
    assert [p.name for p in job_dir.iterdir()] == ["autoexec.pid"]
    assert (job_dir / "autoexec.pid").read_bytes() == b""


def test_bad_filters_and_passthrough_are_usage_errors(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    params, _ = jobs.write({"runFlow": []})
    assert main(["-d", "-j", "7", "-p", str(params), "--nodes", "a,b"]) == 2
    assert "--nodes" in capsys.readouterr().err
    assert main(["-d", "-j", "7", "-p", str(params), "--passthroughenv", "[1]"]) == 2


def test_production_mode_without_console_says_what_is_missing(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    params, _ = jobs.write({"runFlow": []})
    assert main(["-j", "8", "-p", str(params)]) == 2
    assert "console" in capsys.readouterr().err


def test_abort_and_pause_without_a_running_job_exit_2(jobs: JobFiles) -> None:
    assert main(["--jobid", "123", "--abort", "--devmode"]) == 2
    assert main(["--jobid", "123", "--pause", "--devmode"]) == 2


def test_abort_uses_the_recorded_identity_not_a_command_line_substring(jobs: JobFiles) -> None:
    """A process recorded for job 1234 must not be hit by ``--abort`` of job 123 (the original matched the id as a command-line substring)."""
    from autoexec.jobdir.layout import JobDir
    from autoexec.jobdir.lock import proc_start_time as _proc_start_time

    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--jobid", "123"])
    try:
        jd = JobDir.for_job(jobs.home / "data", "1234")
        jd.root.mkdir(parents=True)
        jd.pid_file.write_text(json.dumps({"pid": victim.pid, "jobId": "1234",
                                           "startTime": _proc_start_time(victim.pid)}))
        assert main(["--jobid", "123", "--abort", "--devmode"]) == 2
        assert victim.poll() is None
        stale = JobDir.for_job(jobs.home / "data", "123")
        stale.root.mkdir(parents=True, exist_ok=True)
        stale.pid_file.write_text(json.dumps({"pid": victim.pid, "jobId": "123", "startTime": "1"}))
        assert main(["--jobid", "123", "--abort", "--devmode"]) == 2  # recycled pid: start time differs
        assert victim.poll() is None
        assert main(["--jobid", "1234", "--abort", "--devmode"]) == 0
        assert victim.wait(5) is not None
    finally:
        victim.kill()


def test_cleanstatus_removes_status_only(jobs: JobFiles) -> None:
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner",
                                                      "operations": [script_op("a_1", "true\n")]}]}]}
    rt, _ = jobs.run("11", params)
    assert rt.jobdir.status_dir.exists()
    assert main(["--jobid", "11", "--cleanstatus"]) == 0
    assert not rt.jobdir.status_dir.exists() and rt.jobdir.params.exists()


def test_purge_removes_old_jobs_but_not_nested_younger_ones(jobs: JobFiles) -> None:
    old_params = {"runFlow": []}
    rt_old, _ = jobs.run("123", old_params)
    rt_young, _ = jobs.run("123456", old_params, first_fire=True)
    past = time.time() - 5 * 86400
    os.utime(rt_old.jobdir.params, (past, past))
    old_hislog = next(rt_young.jobdir.console_hislog_dir.iterdir())
    os.utime(old_hislog, (past, past))
    assert main(["--purgejobdata", "3"]) == 0
    assert not rt_old.jobdir.params.exists() and not rt_old.jobdir.console_log.exists()
    assert rt_young.jobdir.params.exists() and rt_young.jobdir.console_log.exists()
    assert not old_hislog.exists()


def test_purge_removes_old_unrecorded_spools_only(jobs: JobFiles) -> None:
    spools = jobs.home / "prefect" / "spool"
    spools.mkdir(parents=True)
    old, young = spools / "1-2-3.jsonl", spools / "4-5-6.jsonl"
    old.write_text("{}\n")
    young.write_text("{}\n")
    past = time.time() - 5 * 86400
    os.utime(old, (past, past))
    assert main(["--purgejobdata", "3"]) == 0
    assert not old.exists() and young.exists()


def test_cli_subprocess_reports_usage_error_without_starting_prefect(jobs: JobFiles) -> None:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "autoexec.cli.command", "-d", "-j", "1", "-p", str(jobs.tmp / "missing.json")],
                          env=cli_env(jobs.home), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "missing.json: params file not found" in proc.stderr
    assert time.monotonic() - started < 5
    assert not (jobs.home / "prefect").exists()


def test_loading_a_job_does_not_import_prefect(jobs: JobFiles) -> None:
    """Prefect reads its logging settings at import: the CLI must set them (quiet) before that."""
    import subprocess
    import sys

    params, nodes = jobs.write({"runFlow": []}, "")
    code = ("import sys; from autoexec.load.loader import JobRequest; from autoexec.load.production import build_job_runtime; "
            f"build_job_runtime(JobRequest(job_id='9', params_file={str(params)!r}, nodes_file={str(nodes)!r}, "
            "dev_mode=True)); print([m for m in sys.modules if m == 'prefect' or m.startswith('prefect.')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_a_cli_job_runs_without_prefect_and_says_when_its_record_is_delayed(jobs: JobFiles) -> None:
    """The job process never imports Prefect; a recorder that cannot reach the API leaves one WARN
    line in the console log, keeps retrying and keeps the spool."""
    import re

    from autoexec.flows.recorder import stop_recorder

    params, nodes = jobs.write({"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner_target",
                                "operations": [script_op("ok_1", "true", "runner_target")]}]}]}, nodes_lines(1))
    env = dict(cli_env(jobs.home), PREFECT_API_URL="http://127.0.0.1:9/api",  # nothing listens on port 9
               AUTOEXEC_PREFECT_RECORD="1")
    code = ("import sys; from autoexec.cli.command import main; "
            f"rc = main(['-d', '-j', '31', '-p', {str(params)!r}, '-n', {str(nodes)!r}]); "
            "print(rc, sorted(m for m in sys.modules if m == 'prefect'))")
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert out.stdout.splitlines()[-1] == "0 []", out.stdout + out.stderr  # after the job's own summary
        console = jobs.home / "data/job/31/log/console.txt"
        wait_until(lambda: "WARN: Prefect record" in console.read_text(), 60, "the record's warning in the console log",
                   interval=0.2)
        line = next(ln for ln in console.read_text().splitlines() if "WARN: Prefect record" in ln)
        assert "Failed to reach API" in line and "the recorder retries" in line
        match = re.search(r"\(spool (\S+)\)", line)
        assert match, line
        spool = Path(match.group(1))
        assert spool.is_file() and '"event":"job_end"' in spool.read_text()
    finally:
        stop_recorder(jobs.home)
