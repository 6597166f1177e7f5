"""Bundled tools run as the runner runs them: a subprocess with a runner-side tool's environment."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from autoexec.conf.config import BUNDLED_PLUGINS

LOCAL = BUNDLED_PLUGINS / "local"
REMOTE = BUNDLED_PLUGINS / "remote"


def run_tool(tool: Path, args: list[str], workdir: Path, **env: str) -> tuple[int, str, dict[str, Any] | None]:
    out_dir = workdir / "output-op" / "local-0-0"
    output_path = out_dir / "op1.json"
    environ = {**os.environ, "OUTPUT_DIR": str(out_dir), "OUTPUT_PATH": str(output_path),
               "OPERATION_ID": "op1", "TERM": "dumb", **env}
    proc = subprocess.run([str(tool), *args], cwd=workdir, env=environ, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=30, text=True)
    output = json.loads(output_path.read_text()) if output_path.exists() else None
    return proc.returncode, proc.stdout, output


def test_demo_local_echoes_options_and_writes_every_output(tmp_path: Path) -> None:
    rc, log, out = run_tool(LOCAL / "demo/local", [
        "--tinput", "hello", "--tjson", '{"a": 1}', "--tselect", "sel2", "--tpassword", "pw-s3cret",
        "--ttextarea", "l1\\nl2", "--tfile", "file/x.txt", "free1"], tmp_path)
    assert rc == 0, log
    assert "option tinput = hello" in log and "(JSON dict)" in log and "argument 0 = free1" in log
    assert "pw-s3cret" not in log and "option tpassword = <set, 9 chars>" in log
    assert "'l1\\nl2'" in log and "file/x.txt (missing)" in log
    assert out is not None
    assert set(out) == {"outtext", "outfile", "outjsonlist", "outjsonobj", "outcsv", "outpassword", "outfilepath"}
    assert out["outtext"] == "local: hello"
    assert out["outjsonlist"] == ["hello", "sel2", "free1"]
    assert out["outjsonobj"] == {"tinput": "hello", "tjson": {"a": 1}, "args": ["free1"]}
    assert (tmp_path / out["outfile"]).read_text().startswith("demo file")


def test_demo_exit_code_option(tmp_path: Path) -> None:
    rc, log, _ = run_tool(LOCAL / "demo/local", ["--tinput", "x", "--texitcode", "3"], tmp_path)
    assert rc == 3 and "ERROR:" in log


def test_demo_localremote_hides_node_password(tmp_path: Path) -> None:
    node = {"resourceId": 5, "host": "10.0.0.1", "protocolPort": 22, "password": "node-s3cret"}
    rc, log, out = run_tool(LOCAL / "demo/localremote", ["--tinput", "x"], tmp_path,
                            AUTOEXEC_NODE=json.dumps(node), NODE_HOST="10.0.0.1", NODE_PORT="22")
    assert rc == 0, log
    assert "node-s3cret" not in log and '"resourceId": 5' in log and "NODE_HOST=10.0.0.1" in log
    assert out is not None and out["outtext"] == "localremote: x"
    assert "has no password" not in log  # AUTOEXEC_NODE carries it, as the original's did
    del node["password"]
    rc, log, _ = run_tool(LOCAL / "demo/localremote", ["--tinput", "x"], tmp_path, AUTOEXEC_NODE=json.dumps(node))
    assert rc == 0 and "has no password" in log, log
    rc, log, _ = run_tool(LOCAL / "demo/localremote", ["--tinput", "x"], tmp_path,
                          AUTOEXEC_NODE=json.dumps(node), AUTOEXEC_NODE_PASSWORD="pw")
    assert rc == 0 and "has no password" not in log, log


def test_remote_demo_writes_output_json_next_to_tool(tmp_path: Path) -> None:
    root = tmp_path / "autoexec-1-5-0"
    root.mkdir()
    subprocess.run(["cp", "-r", str(REMOTE / "lib"), str(REMOTE / "demo"), str(root)], check=True)
    env = {k: v for k, v in os.environ.items() if k != "OUTPUT_PATH"}
    proc = subprocess.run([sys.executable, "remote", "--tinput", "r", "--tpassword", "x-secret", "a1"],
                          cwd=root / "demo", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout
    assert "x-secret" not in proc.stdout
    out = json.loads((root / "demo" / "output.json").read_text())
    assert out["outtext"] == "remote: r" and out["outjsonlist"] == ["r", "", "a1"]
    assert (root / "demo" / out["outfilepath"]).exists()


def test_getcmdout_captures_stdout_without_shell(tmp_path: Path) -> None:
    rc, log, out = run_tool(LOCAL / "basic/getcmdout", ["--cmd", "echo 'a b' $HOME"], tmp_path)
    assert rc == 0, log
    assert out == {"result": "a b $HOME", "returnCode": 0}
    rc, _, out = run_tool(LOCAL / "basic/getcmdout", ["--", sys.executable, "-c", "import sys; print('x'); sys.exit(4)"], tmp_path)
    assert rc == 4 and out is not None and out["result"] == "x"
    rc, log, _ = run_tool(LOCAL / "basic/getcmdout", ["--cmd", "/no/such/cmd"], tmp_path)
    assert rc == 127 and "not found" in log


def test_mergeoutput(tmp_path: Path) -> None:
    rc, log, out = run_tool(LOCAL / "basic/mergeoutput",
                            ["--jsondata", '[{"a": 1, "b": 1}, {"b": 2}]', '{"c": 3, "a": 0}'], tmp_path)
    assert rc == 0, log
    assert out == {"mergedData": {"a": 0, "b": 2, "c": 3}}
    rc, log, _ = run_tool(LOCAL / "basic/mergeoutput", ["--jsondata", "[1]"], tmp_path)
    assert rc == 2 and "expected JSON objects" in log


@pytest.mark.parametrize(("path", "expected"), [("a.b.1.c", "x"), ("a.b", [0, {"c": "x"}]), ("n", None)])
def test_extractjson(tmp_path: Path, path: str, expected: Any) -> None:
    data = json.dumps({"a": {"b": [0, {"c": "x"}]}, "n": None})
    rc, log, out = run_tool(LOCAL / "basic/extractjson", ["--json", data, "--path", path], tmp_path)
    assert rc == 0, log
    assert out == {"value": expected}


def test_extractjson_missing_path(tmp_path: Path) -> None:
    rc, log, out = run_tool(LOCAL / "basic/extractjson", ["--json", "{}", "--path", "a.b"], tmp_path)
    assert rc == 1 and out is None and "not found" in log
    rc, _, out = run_tool(LOCAL / "basic/extractjson", ["--json", "{}", "--path", "a", "--default", "d"], tmp_path)
    assert rc == 0 and out == {"value": "d"}


def test_extracttxt(tmp_path: Path) -> None:
    text = "name: web01\\nversion: 1.2.3\\n"  # textarea as the runner passes it (literal \n)
    rc, log, out = run_tool(LOCAL / "basic/extracttxt", ["--text", text, "--regex", r"^version: (\S+)$"], tmp_path)
    assert rc == 0, log
    assert out == {"value": "1.2.3"}
    (tmp_path / "nomatch").mkdir()
    rc, _, out = run_tool(LOCAL / "basic/extracttxt", ["--text", "abc", "--regex", "x(y)"], tmp_path / "nomatch")
    assert rc == 1 and out is None


def test_echo_and_sleep(tmp_path: Path) -> None:
    rc, log, out = run_tool(LOCAL / "basic/echo", ["--text", "hi", "there"], tmp_path)
    assert rc == 0 and "hi there" in log and out == {"text": "hi there"}
    rc, log, _ = run_tool(LOCAL / "basic/sleep", ["--seconds", "0.05"], tmp_path)
    assert rc == 0 and "Sleep finished" in log
    rc, log, _ = run_tool(LOCAL / "basic/sleep", ["--seconds", "soon"], tmp_path)
    assert rc == 2 and "ERROR:" in log


def test_remote_sh_tools(tmp_path: Path) -> None:
    proc = subprocess.run([str(REMOTE / "basic/cmdrun"), "--cmd", "echo one; exit 3"], cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    assert proc.returncode == 3 and "one" in proc.stdout
    proc = subprocess.run(["sh", str(REMOTE / "basic/sleep"), "--seconds", "0"], stdout=subprocess.PIPE, text=True, timeout=30)
    assert proc.returncode == 0 and "Sleep finished" in proc.stdout


def test_autoexecutils_nodes_and_outputs(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.json"
    nodes.write_text('{"totalCount": 2, "localRunnerId": 1, "jobRunnerIds": [1]}\n'
                     '{"resourceId": 1, "host": "a", "password": "pw1", "runnerId": 1}\n\n'
                     '{"resourceId": 2, "host": "b", "password": "pw2", "runnerId": 1}\n')
    (tmp_path / "nodes-ph-build.json").write_text('{}\n{"resourceId": 9, "host": "z"}\n')
    node_output = tmp_path / "node-out.json"
    node_output.write_text(json.dumps({"op1": {"x": 1}}))
    script = (
        "import json, AutoExecUtils as U\n"
        "print(json.dumps([U.getNodes(), U.getNodesArray('build'), U.getMyNode(), U.loadNodeOutput(),"
        " U.getOpPreOutput(), U.parseOptions(['--a', '-x', '-b', '2', '--c=3', 'f', '--d'])]))\n"
        "U.saveLiveData({'progress': 50})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(LOCAL / "lib"), "AUTOEXEC_NODES_PATH": str(nodes),
           "AUTOEXEC_NODE": '{"resourceId": 1}', "NODE_OUTPUT_PATH": str(node_output), "OPERATION_ID": "op1",
           "LIVEDATA_PATH": str(tmp_path / "live" / "op1.json")}
    proc = subprocess.run([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True, timeout=30, check=True)
    got_nodes, by_phase, my_node, node_out, pre, parsed = json.loads(proc.stdout.splitlines()[0])  # then saveLiveData's INFO lines
    assert got_nodes == {"1": {"resourceId": 1, "host": "a", "runnerId": 1}, "2": {"resourceId": 2, "host": "b", "runnerId": 1}}
    assert by_phase == [{"resourceId": 9, "host": "z"}]
    assert my_node == {"resourceId": 1} and node_out == {"op1": {"x": 1}} and pre == {"x": 1}
    assert parsed == [{"a": "-x", "b": "2", "c": "3"}, ["f", "--d"]]
    assert json.loads((tmp_path / "live" / "op1.json").read_text()) == {"progress": 50}
