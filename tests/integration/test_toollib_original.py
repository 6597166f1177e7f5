"""autoexec's tool library against a local copy of the original's sources (never committed).

Runs when ``AUTOEXEC_TEST_ORIGINAL_TREE`` names the directory holding the original's ``plugins/``
and ``lib/``: every public name of the original's AutoExecUtils (Python and Perl, runner and target
side) exists here with compatible arguments, every ServerAdapter method the original's tools call
exists, and the original's own ``AutoExecUtils.py`` (as an estate's tree brings it) works on top of
autoexec's ``ServerAdapter`` against the loopback console.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autoexec.conf.config import BUNDLED_PLUGINS, PACKAGE_DIR
from autoexec.conf.secrets import MASTER_KEY, encrypt_secret
from tests.fake_console import TOKEN, USER, FakeConsole

pytestmark = pytest.mark.integration
ORIGINAL = os.environ.get("AUTOEXEC_TEST_ORIGINAL_TREE", "")
needs_tree = pytest.mark.skipif(not ORIGINAL, reason="AUTOEXEC_TEST_ORIGINAL_TREE is not set (a local copy of the "
                                                     "original's sources)")
PASS_KEY = "r3MQiqvyDaEocb4zl8YJ3ebbZcpKoo7E"


def _python_api(path: Path) -> dict[str, list[str] | None]:
    """Public top-level names: functions with their argument names, other names with None."""
    api: dict[str, list[str] | None] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            api[node.name] = [a.arg for a in node.args.args]
        elif isinstance(node, ast.ClassDef):
            api[node.name] = None
        elif isinstance(node, ast.Assign):
            api.update({t.id: None for t in node.targets if isinstance(t, ast.Name) and not t.id.startswith("_")})
    return api


@needs_tree
@pytest.mark.parametrize("side", ["local", "remote"])
def test_python_api_covers_the_originals(side: str) -> None:
    theirs = _python_api(Path(ORIGINAL) / "plugins" / side / "lib" / "AutoExecUtils.py")
    ours = _python_api(BUNDLED_PLUGINS / side / "lib" / "AutoExecUtils.py")
    assert sorted(set(theirs) - set(ours)) == []
    for name, args in theirs.items():
        if args is not None:
            assert ours[name] is not None and ours[name][:len(args)] == args, name


@needs_tree
@pytest.mark.parametrize("side", ["local", "remote"])
def test_perl_api_covers_the_originals(side: str) -> None:
    def subs(path: Path) -> set[str]:
        return set(re.findall(r"^sub\s+([A-Za-z]\w*)", path.read_text(encoding="utf-8", errors="replace"), re.M))

    theirs = subs(Path(ORIGINAL) / "plugins" / side / "lib" / "AutoExecUtils.pm")
    assert sorted(theirs - subs(BUNDLED_PLUGINS / side / "lib" / "AutoExecUtils.pm")) == []


@needs_tree
def test_server_adapter_has_every_method_the_originals_tools_call() -> None:
    called: set[str] = set()
    for path in (Path(ORIGINAL) / "plugins").rglob("*"):
        if path.is_file() and path.stat().st_size < 2_000_000:
            called.update(re.findall(r"[sS]erverAdapter(?:\(context\))?\.(\w+)\(", path.read_text(errors="replace")))
    sys.path.insert(0, str(PACKAGE_DIR / "toollib"))
    try:
        import ServerAdapter
    finally:
        sys.path.remove(str(PACKAGE_DIR / "toollib"))
    called.discard("ServerAdapter")  # the module-qualified constructor
    assert called and sorted(m for m in called if not hasattr(ServerAdapter.ServerAdapter, m)) == []


@needs_tree
def test_the_originals_autoexecutils_works_on_autoexecs_server_adapter(tmp_path: Path, fake_console: FakeConsole) -> None:
    home = tmp_path / "home"
    lib = home / "plugins" / "local" / "lib"
    lib.mkdir(parents=True)
    shutil.copy(Path(ORIGINAL) / "plugins" / "local" / "lib" / "AutoExecUtils.py", lib)
    (home / "conf").mkdir()
    (home / "conf" / "config.ini").write_text(
        f"[server]\nserver.baseurl = {fake_console.url}\nserver.username = {USER}\n"
        f"server.password = {encrypt_secret(TOKEN, PASS_KEY, '{ENCRYPTED}')}\n"
        f"password.key = {encrypt_secret(PASS_KEY, MASTER_KEY, '{ENCRYPTED}')}\n[autoexec]\n")
    fake_console.responses["getAccount"] = encrypt_secret("node pass", PASS_KEY, "{ENCRYPTED}")
    fake_console.responses["getCmdbCiAttrs"] = {"attrEntityData": {"a": {"name": "ip", "actualValueList": ["1.2.3.4"]}}}
    fake_console.responses["getJobStatus"] = {"status": "running"}
    code = ("import json, AutoExecUtils as U; print(json.dumps([U.getNodePwd(1, 'h', 22, 'root', 'ssh'), "
            "U.getCmdbCiAttrs(1, ['ip']), U.updateInspectStatus('Linux', 1, 'ok', 0), U.getJobStatus({'jobId': '5'})]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(lib), str(PACKAGE_DIR / "toollib")]),
           "AUTOEXEC_JOBID": "5", "AUTOEXEC_TENANT": "develop"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["node pass", {"ip": "1.2.3.4"}, True, "running"]
    assert [r.api for r in fake_console.log] == ["getAccount", "getCmdbCiAttrs", "updateInspectStatus", "getJobStatus"]


@needs_tree
def test_tagent_client_has_every_method_the_originals_python_tools_call() -> None:
    called: set[str] = set()
    for path in (Path(ORIGINAL) / "plugins" / "local").rglob("*"):
        if path.is_file() and path.stat().st_size < 2_000_000:
            text = path.read_text(errors="replace")
            if "import TagentClient" in text:
                called.update(re.findall(r"\btagent\.(\w+)\(", text))
    sys.path.insert(0, str(PACKAGE_DIR / "toollib"))
    try:
        import TagentClient
    finally:
        sys.path.remove(str(PACKAGE_DIR / "toollib"))
    assert called and sorted(m for m in called if not hasattr(TagentClient.TagentClient, m)) == []
