"""Malformed input of every kind: refused before anything runs, exit 2, one line naming the file,
the line or field and the problem; nothing recorded for the job (at most its lock may exist)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autoexec.cli.command import main
from autoexec.jobdir.layout import JobDir
from autoexec.load.loader import JobRequest, build_runtime
from autoexec.models.params import JobInputError
from tests.fixtures_core import JobFiles, nodes_lines, script_op

JOB = "4242"


def _params(phase: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    phase = phase or {"phaseName": "p", "phaseType": "runner", "operations": [script_op("a_1", "echo hi\n")]}
    return {"runFlow": [{"groupNo": 0, "phases": [phase]}], **top}


def _nothing_recorded(home: Path) -> None:
    """No status, log, input copy or output for the job, and nothing else under data/ but its dir."""
    root = JobDir.for_job(home / "data", JOB).root
    for name in ("status", "log", "output", "params.json", "nodes.json"):
        assert not (root / name).exists(), name
    data = home / "data"
    outside = [p for p in data.rglob("*") if data.exists() and not (p == root or root in p.parents
                                                                  or p in root.parents)]
    assert not outside, outside


def _refused(jobs: JobFiles, capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(["--devmode", "--jobid", JOB, *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    _nothing_recorded(jobs.home)
    return err


def _run_with(jobs: JobFiles, capsys: pytest.CaptureFixture[str], params_text: str | bytes,
              nodes_text: str | bytes | None = None) -> tuple[str, Path, Path]:
    params = jobs.tmp / "params.json"
    nodes = jobs.tmp / "nodes.jsonl"
    params.write_bytes(params_text if isinstance(params_text, bytes) else params_text.encode("utf-8", "surrogatepass"))
    nodes_data = nodes_lines(1) if nodes_text is None else nodes_text
    nodes.write_bytes(nodes_data if isinstance(nodes_data, bytes) else nodes_data.encode("utf-8"))
    return _refused(jobs, capsys, ["--paramsfile", str(params), "--nodesfile", str(nodes)]), params, nodes


def test_params_not_utf8(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    err, params, _ = _run_with(jobs, capsys, b'{\n "jobId": "\xff\xfe"}\n')
    assert str(params) in err and "line 2: not UTF-8" in err


def test_nodes_not_utf8(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    err, _, nodes = _run_with(jobs, capsys, json.dumps(_params()), b'{"totalCount": 1}\n{"host": "\xc3("}\n')
    assert str(nodes) in err and "line 2: not UTF-8" in err


def test_json_nested_too_deep(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    deep = "[" * 5000 + "]" * 5000
    err, params, _ = _run_with(jobs, capsys, '{"opt": {"x": ' + deep + "}}")
    assert str(params) in err and "nested deeper than" in err
    err, _, nodes = _run_with(jobs, capsys, json.dumps(_params()), '{"totalCount": 1}\n{"x": ' + deep + "}\n")
    assert str(nodes) in err and "line 2" in err and "nested deeper" in err


def test_phase_name_too_long_for_a_file_name(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    phase = {"phaseName": "p" * 100_000, "phaseType": "runner", "operations": [script_op("a_1", "true\n")]}
    err, _, _ = _run_with(jobs, capsys, json.dumps(_params(phase)))
    assert "runFlow[0].phases[0].phaseName" in err and "file name" in err and "200 bytes" in err


@pytest.mark.parametrize("field,value,where", [
    ("host", "a\\ud800b", "field host"),
    ("username", "x\\u0000", "field username"),
])
def test_bad_text_in_a_node(jobs: JobFiles, capsys: pytest.CaptureFixture[str], field: str, value: str,
                            where: str) -> None:
    node = f'{{"resourceId": 1, "runnerId": 1, "host": "h", "protocol": "ssh", "{field}": "{value}"}}'
    err, _, nodes = _run_with(jobs, capsys, json.dumps(_params()), '{"totalCount": 1}\n' + node + "\n")
    assert str(nodes) in err and "line 2" in err and where in err


def test_lone_surrogate_in_script_content(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    text = json.dumps(_params()).replace("echo hi", "echo \\ud800")
    err, _, _ = _run_with(jobs, capsys, text)
    assert "runFlow[0].phases[0].operations[0].scriptContent" in err and "surrogate" in err


def test_nul_in_an_option_value(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    op = script_op("a_1", "true\n", opt={"name": "a\u0000b"}, desc={"name": "text"})
    err, _, _ = _run_with(jobs, capsys, json.dumps(_params({"phaseName": "p", "operations": [op]})))
    assert "operations[0].opt.name" in err and "NUL" in err


def test_equals_sign_in_an_environment_name(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    err, _, _ = _run_with(jobs, capsys, json.dumps(_params(environment={"A=B": "1"})))
    assert "field environment" in err and "'A=B'" in err


def test_unknown_phase_type(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    phase = {"phaseName": "p", "phaseType": "bogus", "operations": [script_op("a_1", "true\n")]}
    err, _, _ = _run_with(jobs, capsys, json.dumps(_params(phase)))
    assert "runFlow[0].phases[0].phaseType" in err and "unknown phaseType 'bogus'" in err


def test_resource_id_zero_is_not_the_runner(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    node = json.dumps({"resourceId": 0, "runnerId": 1, "host": "h", "protocol": "ssh"})
    err, _, nodes = _run_with(jobs, capsys, json.dumps(_params()), '{"totalCount": 1}\n' + node + "\n")
    assert str(nodes) in err and "line 2: field resourceId" in err and "greater than 0" in err


def test_purgejobdata_zero_runs_nothing(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    for days in ("0", "-1", "nan", "x"):
        assert main(["--purgejobdata", days]) == 2
        err = capsys.readouterr().err
        assert "--purgejobdata" in err and "positive number of days" in err and len(err.splitlines()) == 1
    assert not (jobs.home / "data" / "job").exists()  # job 0 was not run


def test_bad_flags(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    params, nodes = jobs.write(_params(), nodes_lines(1))
    base = ["--paramsfile", str(params), "--nodesfile", str(nodes)]
    assert "--execuser" in _refused(jobs, capsys, [*base, "--execuser", "../../etc"])
    assert "--nodes" in _refused(jobs, capsys, [*base, "--nodes", "0"])
    assert "--phasegroups" in _refused(jobs, capsys, [*base, "--phasegroups", "-1"])
    assert "--passthroughenv" in _refused(jobs, capsys, [*base, "--passthroughenv", "[" * 5000 + "]" * 5000])
    assert "--passthroughenv" in _refused(jobs, capsys, [*base, "--passthroughenv", '{"a": "\\ud800"}'])


@pytest.mark.parametrize("content,expect", [
    (b"[server]\nserver.baseurl = http://\xff\n", "line 2: not UTF-8"),
    (b"[server]\nserver.verifyTLS = maybe\n", "server.verifyTLS = 'maybe' must be 1 or 0"),
    (b"[server]\nserver.caFile = /nonexistent/ca.pem\n", "server.caFile = '/nonexistent/ca.pem': no such CA bundle"),
    (b"[server]\nserver.baseurl = ftp://console\n", "must start with http:// or https://"),
    (b"[server\n", "cannot parse"),
])
def test_bad_config_ini(jobs: JobFiles, capsys: pytest.CaptureFixture[str], content: bytes, expect: str) -> None:
    conf = jobs.home / "conf"
    conf.mkdir()
    (conf / "config.ini").write_bytes(content)
    params, nodes = jobs.write(_params(), nodes_lines(1))
    err = _refused(jobs, capsys, ["--paramsfile", str(params), "--nodesfile", str(nodes)])
    assert "config.ini" in err and expect in err


def test_deployment_parameters_are_checked_like_files(jobs: JobFiles) -> None:
    bad = _params()
    bad["runFlow"][0]["phases"][0]["operations"][0]["scriptContent"] = "echo \ud800"
    with pytest.raises(JobInputError, match=r"params \(inline\): field .*scriptContent: .*surrogate"):
        build_runtime(JobRequest(job_id=JOB, params=bad, nodes=nodes_lines(1), dev_mode=True))
    nodes = nodes_lines(1).replace('"10.1.0.1"', '"10.1.0.1\udc80"')
    with pytest.raises(JobInputError, match=r"nodes \(inline\): line 2: field host: .*surrogate"):
        build_runtime(JobRequest(job_id=JOB, params=_params(), nodes=nodes, dev_mode=True))
    _nothing_recorded(jobs.home)


def test_hostile_console_answers_are_one_line_errors(tmp_path: Path) -> None:
    """What the console answered is checked like a file (the real HTTP path is in the console tests;
    a standard JSON encoder cannot even send a lone surrogate, so the answer is handed in here)."""
    from types import SimpleNamespace

    from autoexec.console.downloads import get_params
    from autoexec.console.errors import ConsoleDownloadError

    answer = {"jobId": 61, "runFlow": [{"phases": [{"phaseName": "a\ud800"}]}]}
    console = SimpleNamespace(call=lambda api, payload: SimpleNamespace(return_=answer))
    with pytest.raises(ConsoleDownloadError, match=r"getParams: Return field runFlow\[0\]\.phases\[0\]\.phaseName: .*surrogate"):
        get_params(console, "61", tmp_path / "params.json")  # type: ignore[arg-type]
    assert not (tmp_path / "params.json").exists()


def test_malformed_phase_nodes_file_mid_job_fails_with_one_line(jobs: JobFiles) -> None:
    """A phase's nodes arrive just before it runs (the console's per-phase file): a malformed one
    cannot be refused before the job starts, so the job stops there with one ERROR line, exit 1."""
    rt, outcome = jobs.run("56", _params(), nodes_lines(1))
    assert outcome.exit_code == 0
    rt.jobdir.phase_nodes("p").write_text('{"totalCount": 1}\n{"resourceId": 1, "runnerId": 1, "host": "h\\ud800"}\n')
    rt, outcome = jobs.run("56", None, None, force=True)
    assert outcome.exit_code == 1
    lines = [ln for ln in rt.jobdir.console_log.read_text().splitlines() if "ERROR" in ln]
    assert len(lines) == 1 and "nodes-ph-p.json: line 2: field host" in lines[0] and "Traceback" not in lines[0]


def test_node_password_marked_encrypted_must_be_hex(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    node = json.dumps({"resourceId": 1, "runnerId": 1, "host": "h", "protocol": "ssh", "password": "{RC4}zz"})
    err, _, nodes = _run_with(jobs, capsys, json.dumps(_params()), '{"totalCount": 1}\n' + node + "\n")
    assert str(nodes) in err and "line 2: field password" in err and "not hex ciphertext" in err
    assert "zz" not in err


def test_node_password_without_key_fails_the_node_with_one_line(jobs: JobFiles) -> None:
    """No ``password.key`` configured: one WARN line (a target op would fail on it), never a traceback."""
    node = json.dumps({"resourceId": 1, "runnerId": 1, "host": "h", "protocol": "ssh", "password": "{RC4}0a1b2c"})
    rt, outcome = jobs.run("57", _params({"phaseName": "p", "phaseType": "runner_target",
                                          "operations": [script_op("a_1", "true\n", op_type="runner_target")]}),
                           '{"totalCount": 1}\n' + node + "\n")
    assert outcome.exit_code == 0
    log = rt.jobdir.node_log("p", "h--1").read_text()
    assert "password cannot be decrypted" in log and "Traceback" not in log
