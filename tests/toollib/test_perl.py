"""The Perl tool library (AutoExecUtils.pm, runner side and target side), function by function,
in real perl processes with real files, a real datagram socket and a real named pipe."""
from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from autoexec.conf.config import BUNDLED_PLUGINS
from tests.waiting import wait_until

LOCAL_LIB = BUNDLED_PLUGINS / "local" / "lib"
REMOTE_LIB = BUNDLED_PLUGINS / "remote" / "lib"
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k not in ("OUTPUT_PATH", "LIVEDATA_PATH", "NODE_OUTPUT_PATH", "AUTOEXEC_NODE", "AUTOEXEC_NODES_PATH",
                          "AUTOEXEC_JOB_SOCK", "OPERATION_ID", "PERL5LIB")}


def perl(code: str, *args: str, lib: Path = LOCAL_LIB, env: dict[str, str] | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["perl", f"-I{lib}", "-MAutoExecUtils", "-e", code, "--", *args],
                          env={**CLEAN_ENV, **(env or {})}, capture_output=True, text=True, timeout=60, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc


def perl_json(code: str, **kwargs: Any) -> Any:
    """Run ``code``, whose last statement prints one JSON document as the last output line."""
    out = perl("use JSON; " + code, **kwargs).stdout
    return json.loads(out.strip().splitlines()[-1])


# -- runner side ---------------------------------------------------------------------------------------
def test_set_env_masks_secrets_in_the_process_title_and_sets_umask() -> None:
    code = ('AutoExecUtils::setEnv(); open(my $f, "<", "/proc/$$/cmdline"); local $/; my $c = <$f>; '
            'printf("%04o|%s|%s\\n", umask(), $0, $c =~ /s3cr3t|inner/ ? "leaked" : "clean")')
    out = perl(code, "--password", "s3cr3t", "--node", '{"host":"h","password":"inner"}', "-v", "1").stdout
    mask, title, proc_title = out.strip().split("|")
    assert mask == "0022" and proc_title == "clean"
    assert title == '-e --password ****** --node {"host":"h","password":"******"} -v 1'


def test_file_content(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"line1\nline2 \xe4\xb8\xad\n")
    code = 'my $c = AutoExecUtils::getFileContent($ARGV[0]); print(defined($c) ? $c : "UNDEF")'
    assert perl(code, str(path)).stdout.encode() == b"line1\nline2 \xe4\xb8\xad\n"
    missing = perl(code, str(tmp_path / "nope")).stdout
    assert "WARN: File:" in missing and missing.endswith("UNDEF")


def test_save_output_and_live_data(tmp_path: Path) -> None:
    out, live = tmp_path / "o" / "op.json", tmp_path / "l" / "op.json"
    code = ('AutoExecUtils::saveOutput({name => "\\x{540d}", list => [1, "b"]}); '
            'AutoExecUtils::saveLiveData({progress => 50})')
    printed = perl(code, env={"OUTPUT_PATH": str(out), "LIVEDATA_PATH": str(live)}).stdout
    assert json.loads(out.read_text(encoding="utf-8")) == {"name": "名", "list": [1, "b"]}
    assert json.loads(live.read_text()) == {"progress": 50}
    assert f"INFO: Try to save output to {out}." in printed
    assert sorted(p.name for p in out.parent.iterdir()) == ["op.json"]
    assert "because of environ OUTPUT_PATH not defined" in perl('AutoExecUtils::saveOutput({a => 1})', cwd=tmp_path).stdout
    assert list(tmp_path.glob("*.json")) == []


def _nodes_dir(tmp_path: Path) -> Path:
    header = json.dumps({"totalCount": 2, "localRunnerId": 1, "jobRunnerIds": [1]})
    a = json.dumps({"resourceId": 11, "host": "10.0.0.1", "port": 22, "password": "pa"})
    b = json.dumps({"resourceId": 12, "host": "10.0.0.2", "port": 22, "password": "pb"})
    (tmp_path / "nodes.json").write_text("\n".join([header, a, b]) + "\n")
    (tmp_path / "nodes-ph-deploy.json").write_text("\n".join([header, b]) + "\n")
    (tmp_path / "nodes-gp-2.json").write_text("\n".join([header, a]) + "\n")
    return tmp_path


def test_nodes(tmp_path: Path) -> None:
    env = {"AUTOEXEC_NODES_PATH": str(_nodes_dir(tmp_path) / "nodes-ph-deploy.json"),
           "AUTOEXEC_NODE": json.dumps({"resourceId": 12, "host": "10.0.0.2"})}
    got = perl_json(
        'my $ids = sub { [ map { $_->{resourceId} } @{ $_[0] } ] }; '
        'print(to_json({ all => $ids->(AutoExecUtils::getNodesArray()), '
        'phase => $ids->(AutoExecUtils::getNodesArray("deploy")), '
        'group => $ids->(AutoExecUtils::getNodesArray("other", 2)), '
        'map => AutoExecUtils::getNodes(), node => AutoExecUtils::getNode(12), none => AutoExecUtils::getNode(11), '
        'me => AutoExecUtils::getMyNode(), '
        'pipe => AutoExecUtils::getNodePipeFile("/j", "deploy", {host => "h", port => 22, resourceId => 12}) }), "\\n")',
        env=env)
    assert (got["all"], got["phase"], got["group"]) == ([11, 12], [12], [11])
    assert got["map"] == {"11": {"resourceId": 11, "host": "10.0.0.1", "port": 22},
                          "12": {"resourceId": 12, "host": "10.0.0.2", "port": 22}}
    assert got["node"] == {"resourceId": 12, "host": "10.0.0.2", "port": 22, "password": "pb"}
    assert got["none"] == {} and got["me"] == {"resourceId": 12, "host": "10.0.0.2"}
    assert got["pipe"] == "/j/log/deploy/h-22-12.txt.run.pipe"


def test_previous_outputs(tmp_path: Path) -> None:
    output = tmp_path / "node-output.json"
    output.write_text(json.dumps({"op_1": {"v": 1}, "op_2": {"v": 2}}))
    got = perl_json('print(to_json([AutoExecUtils::loadNodeOutput(), AutoExecUtils::getOpPreOutput()]), "\\n")',
                    env={"NODE_OUTPUT_PATH": str(output), "OPERATION_ID": "op_2"})
    assert got == [{"op_1": {"v": 1}, "op_2": {"v": 2}}, {"v": 2}]


@pytest.fixture
def job_sock(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "job1.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(10)
    yield server, path
    server.close()


def test_job_socket_messages(job_sock: tuple[socket.socket, str], tmp_path: Path) -> None:
    server, path = job_sock
    code = ('AutoExecUtils::setJobEnv(0, {A => "1"}); '
            'AutoExecUtils::informNodeWaitInput(phaseName => "deploy", resourceId => 7, pipeFile => "/p", '
            'title => "T", options => ["commit", "rollback"]); '
            'AutoExecUtils::informNodeWaitInput(phaseName => "deploy", resourceId => 7, clean => 1);')
    out = perl(code, env={"AUTOEXEC_JOB_SOCK": path}).stdout
    received = [json.loads(server.recv(8192)) for _ in range(3)]
    assert received[0] == {"action": "setEnv", "onlyInProcess": 0, "items": {"A": "1"}}
    assert received[1] == {"action": "informNodeWaitInput", "phaseName": "deploy", "resourceId": 7, "clean": None,
                           "interact": {"title": "T", "opType": "button", "message": "Please select",
                                        "options": ["commit", "rollback"], "role": None, "pipeFile": "/p"}}
    assert received[2]["clean"] == 1 and received[2]["interact"] is None
    assert "INFO: Inform runner update status to running success." in out
    gone = {"AUTOEXEC_JOB_SOCK": str(tmp_path / "gone.sock")}
    warn = perl('AutoExecUtils::informNodeWaitInput(phaseName => "p", resourceId => 7)', env=gone).stdout
    assert "WARN: Inform runner update status to waitInput failed, socket file" in warn
    failed = subprocess.run(["perl", f"-I{LOCAL_LIB}", "-MAutoExecUtils", "-e", 'AutoExecUtils::setJobEnv(0, {A => 1})'],
                            env={**CLEAN_ENV, **gone}, capture_output=True, text=True, timeout=60)
    assert failed.returncode != 0 and "ERROR: Set job enviroment failed, socket file" in failed.stderr


@pytest.mark.parametrize(("op_type", "answers", "expected"), [
    ("button", ["[u1]# maybe", "[u1]# commit"], ["u1", "commit"]),
    ("mselect", ['[u2]# ["commit", "other"]', '[u2]# ["rollback", "commit"]'], ["u2", '["rollback", "commit"]']),
    ("input", ["free text"], [None, "free text"]),
    ("button", ["force-exit"], [None, None]),
])
def test_do_interact_waits_for_a_valid_answer_on_the_pipe(tmp_path: Path, op_type: str, answers: list[str],
                                                         expected: list[Any]) -> None:
    pipe = tmp_path / "h-22-7.txt.run.pipe"
    code = ('use JSON; my @r = AutoExecUtils::doInteract(pipeFile => $ARGV[0], message => "Go?", opType => $ARGV[1], '
            'options => ["commit", "rollback"]); print(to_json(\\@r, {allow_nonref => 1}), "\\n")')
    quiet_stdin, keep_open = os.pipe()  # a terminal nobody types into (EOF on STDIN means "abort")
    proc = subprocess.Popen(["perl", f"-I{LOCAL_LIB}", "-MAutoExecUtils", "-e", code, "--", str(pipe), op_type],
                            env=CLEAN_ENV, stdin=quiet_stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(quiet_stdin)
    try:
        wait_until(pipe.exists, 30, f"{pipe} to appear", interval=0.02)
        desc = json.loads(Path(f"{pipe}.json").read_text())
        assert desc["message"] == "Go?" and desc["options"] == ["commit", "rollback"]
        with open(pipe, "w") as fh:
            for answer in answers:
                fh.write(answer + "\n")
                fh.flush()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        os.close(keep_open)
    assert proc.returncode == 0, err
    assert out.startswith("[Wait Interact]Go?\n")
    assert out.count("WARN: Invalid input value:") == len(answers) - 1
    assert json.loads(out.strip().splitlines()[-1]) == expected
    assert not pipe.exists() and not Path(f"{pipe}.json").exists()


def test_table_check_and_dsl() -> None:
    data = {"name": "db", "ok": 1, "disks": [{"dev": "sda", "used": 90}, {"dev": "sdb", "used": 10}]}
    code = ('my $d = from_json($ARGV[0]); my $h = {}; my $rows = AutoExecUtils::hashToTable($d, undef, $h); '
            'my $rc = AutoExecUtils::JsonToTableCheck($d, undef, "[ok] == 1", "[disks.used] < 80"); '
            'my $none = AutoExecUtils::JsonToTableCheck($d, undef, "[name] == \'x\'"); '
            'print(to_json({rows => $rows, header => [sort keys %$h], rc => $rc, none => $none, '
            'dsl => AutoExecUtils::evalDsl({status => "ok", n => 3}, "[status] == \'ok\' and [n] > 2") ? 1 : 0}), "\\n")')
    out = perl("use JSON; " + code, json.dumps(data)).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["header"] == ["disks.dev", "disks.used", "name", "ok"]
    assert sorted(r["disks.dev"] for r in got["rows"]) == ["sda", "sdb"] and all(r["name"] == "db" for r in got["rows"])
    assert (got["rc"], got["none"], got["dsl"]) == (1, 2, 1)
    assert "ERROR: sda\t90\tdb\t1\t" in out and "FINE: sdb\t10\tdb\t1\t" in out
    assert "ERROR: No data matched filter:[name] == 'x'" in out


def test_json_module_missing_falls_back_to_core_json_pp(tmp_path: Path) -> None:
    broken = tmp_path / "inc"
    broken.mkdir()
    (broken / "JSON.pm").write_text('die "Can\'t locate JSON.pm in \\@INC\\n";\n')
    out = tmp_path / "o.json"
    perl("AutoExecUtils::saveOutput({a => [1]})", env={"OUTPUT_PATH": str(out), "PERL5LIB": str(broken)})
    assert json.loads(out.read_text()) == {"a": [1]}


# -- target side ---------------------------------------------------------------------------------------
def test_remote_tool_writes_output_json_in_its_own_directory(tmp_path: Path) -> None:
    bundle = tmp_path / "osbasic"
    bundle.mkdir()
    tool = bundle / "mytool"
    tool.write_text('use FindBin; use lib "$FindBin::Bin/../lib"; use AutoExecUtils;\n'
                    'AutoExecUtils::setEnv(); print("$ENV{OUTPUT_PATH}|$0\\n");\n'
                    'AutoExecUtils::saveOutput({host => "h1", n => 2});\n')
    (tmp_path / "lib").symlink_to(REMOTE_LIB)
    proc = subprocess.run(["perl", str(tool), "--pass", "x1", "-account", "a2"], env=CLEAN_ENV,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{bundle}/output.json|{tool} --pass ****** -account ******"
    assert json.loads((bundle / "output.json").read_text()) == {"host": "h1", "n": 2}


def test_remote_helpers() -> None:
    got = perl_json('my $r = AutoExecUtils::randString(12); print(to_json({len => length($r), ok => ($r =~ /^[1-9A-Za-z]+$/ ? 1 : 0), '
                    'enc => AutoExecUtils::getShellEncoding(), txt => AutoExecUtils::getFileContent($0) // "UNDEF"}), "\\n")',
                    lib=REMOTE_LIB, env={"LANG": "zh_CN.GB18030"})
    assert (got["len"], got["ok"], got["enc"]) == (12, 1, "GB18030")
    assert perl_json('print(to_json([AutoExecUtils::getShellEncoding()]), "\\n")', lib=REMOTE_LIB,
                     env={"LANG": "C"}) == ["utf-8"]


def test_remote_output_converted_from_the_shell_charset(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    tool = bundle / "t"
    tool.write_text('use FindBin; use lib $ARGV[0]; use AutoExecUtils;\n'
                    'AutoExecUtils::saveOutput({msg => "\\xd6\\xd0\\xce\\xc4", ascii => "x"}, 1);\n')
    proc = subprocess.run(["perl", str(tool), str(REMOTE_LIB)], env={**CLEAN_ENV, "LANG": "zh_CN.GBK"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((bundle / "output.json").read_text(encoding="utf-8")) == {"msg": "中文", "ascii": "x"}


def test_remote_lib_json_stands_in_for_the_cpan_module() -> None:
    """Target-side tools "use JSON" with the remote lib first in @INC; hosts with only core Perl get it too."""
    code = ('print(join("|", $INC{"JSON.pm"}, to_json({a => JSON::true, b => [1, "x"]}, {canonical => 1}), '
            'JSON->new->canonical(1)->encode(from_json(q({"z":1,"y":null}))), encode_json({u => "\\x{4e2d}"}), '
            'JSON::is_bool(decode_json("[false]")->[0]) ? "bool" : "plain", JSON::false ? "t" : "f"), "\\n")')
    proc = subprocess.run(["perl", f"-I{REMOTE_LIB}", "-e", "use JSON qw(-support_by_pp); " + code], env=CLEAN_ENV,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    parts = proc.stdout.decode("utf-8").strip().split("|")
    assert parts == [str(REMOTE_LIB / "JSON.pm"), '{"a":true,"b":[1,"x"]}', '{"y":null,"z":1}', '{"u":"中"}', "bool", "f"]
