"""Plugin trees (``plugins.path``), the library paths and interpreter of runner-side tools, the
configuration their trees point at, and the job-dir records the original wrote."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from autoexec.conf.config import BUNDLED_PLUGINS, ConfigError, load_config
from autoexec.ops.toolenv import CORE_LIB_DIRS, library_env, point_tree_configs
from autoexec.ops.tools import local_tool_argv, python_shebang_flags
from tests.fixtures_core import JobFiles, script_op


def _tree(root: Path, *libs: str) -> Path:
    for sub in ("plugins/local/cat", "plugins/remote", *libs):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


# --- plugins.path ---------------------------------------------------------------------------
def test_plugins_path_orders_trees_before_home_and_bundled(ae_home: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _tree(tmp_path / "a"), _tree(ae_home / "b")
    (ae_home / "conf").mkdir()
    (ae_home / "conf" / "config.ini").write_text(f"[autoexec]\nplugins.path = {a}{os.pathsep}b\n")
    assert load_config().plugin_dirs == [a / "plugins", ae_home / "b" / "plugins", ae_home / "plugins", BUNDLED_PLUGINS]
    monkeypatch.setenv("AUTOEXEC_PLUGINS_PATH", str(b))  # the variable wins over the key
    assert load_config().plugin_dirs == [b / "plugins", ae_home / "plugins", BUNDLED_PLUGINS]


def test_plugins_path_entry_without_plugins_dir_is_one_clear_error(ae_home: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    tree = _tree(tmp_path / "install")
    monkeypatch.setenv("AUTOEXEC_PLUGINS_PATH", str(tree / "plugins"))
    with pytest.raises(ConfigError) as err:
        load_config()
    text = str(err.value)
    assert text.startswith("AUTOEXEC_PLUGINS_PATH: plugins.path entry") and "name the tree's root" in text


def test_cli_reports_a_bad_plugins_path_and_exits_2(ae_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from autoexec.cli.command import main

    monkeypatch.setenv("AUTOEXEC_PLUGINS_PATH", str(tmp_path / "nowhere"))
    assert main(["--devmode", "--jobid", "5"]) == 2
    assert "plugins.path entry" in capsys.readouterr().err


# --- library paths ----------------------------------------------------------------------------
def test_library_env_follows_the_original_order(tmp_path: Path) -> None:
    own = _tree(tmp_path / "own", "plugins/local/lib", "plugins/local/pllib/lib/perl5", "plib")
    other = _tree(tmp_path / "other", "plugins/local/lib")
    dirs = [other / "plugins", own / "plugins", BUNDLED_PLUGINS]
    tool_dir = own / "plugins" / "local" / "cat"
    env = library_env(tool_dir, dirs, {"PATH": "/usr/bin", "PERL5LIB": "/site", "PYTHONPATH": ""})
    core = [str(d) for d in CORE_LIB_DIRS if d.is_dir()]
    local = [str(own / "plugins/local/lib"), str(other / "plugins/local/lib")]
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tool_dir), str(tool_dir / "lib"), *local, *core, str(own / "plib")]
    assert env["PERL5LIB"].split(os.pathsep) == [str(tool_dir), str(tool_dir / "lib"), *local, *core,
                                                 str(own / "plugins/local/pllib/lib/perl5"), "/site"]
    assert env["PATH"].split(os.pathsep) == [str(tool_dir / "lib"), *local, "/usr/bin"]


def test_python_tools_run_on_autoexecs_interpreter(tmp_path: Path) -> None:
    cases = {"#!/usr/bin/python3 -u\n": ["-u"], "#!/usr/bin/env python3\n": [], "#!/usr/bin/python\n": [],
             "#!/usr/bin/perl\n": None, "#!/bin/bash\n": None, "print(1)\n": None}
    for n, (first, flags) in enumerate(cases.items()):
        tool = tmp_path / f"t{n}"
        tool.write_text(first + "x = 1\n")
        assert python_shebang_flags(tool) == flags, first
        expected = [str(tool)] if flags is None else [sys.executable, *flags, str(tool)]
        assert local_tool_argv(tool) == (["/bin/sh", str(tool)] if not first.startswith("#!") else expected)
    elf = tmp_path / "binary"
    elf.write_bytes(b"\x7fELF\x02\x01rest")
    assert local_tool_argv(elf) == [str(elf)]


def test_tool_without_shebang_runs_as_sh_script(jobs: JobFiles, tmp_path: Path) -> None:
    tool_dir = jobs.home / "plugins" / "local" / "plain"
    tool_dir.mkdir(parents=True)
    (tool_dir / "noshebang").write_text('echo "plain sh tool got $1"\n')
    (tool_dir / "noshebang").chmod(0o755)
    op = {"opId": "plain/noshebang_1", "opName": "plain/noshebang", "opType": "runner", "opt": {},
          "desc": {}, "arg": [{"type": "text", "value": "x y"}]}
    rt, outcome = jobs.run("7202", {"runFlow": [{"groupNo": 0, "phases": [
        {"phaseName": "p", "phaseType": "runner", "operations": [op]}]}]})
    log = rt.jobdir.node_log("p", "local-0-0").read_text()
    assert outcome.status == "succeed", log
    assert "plain sh tool got x y" in log


# --- the configuration tools read -----------------------------------------------------------
def test_tree_elsewhere_gets_autoexecs_config_and_a_foreign_one_is_named(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "conf").mkdir(parents=True)
    config = home / "conf" / "config.ini"
    config.write_text("[server]\nserver.baseurl = http://console\n")
    fresh = _tree(tmp_path / "fresh")
    old = _tree(tmp_path / "old-install", "conf")
    (old / "conf" / "config.ini").write_text("[server]\nserver.baseurl = http://old\n")
    (home / "plugins").symlink_to(old / "plugins")  # a symlinked $AUTOEXEC_HOME/plugins resolves to old/
    warnings: list[str] = []
    dirs = [fresh / "plugins", home / "plugins", BUNDLED_PLUGINS]
    point_tree_configs(dirs, home, config, warnings.append)
    assert os.path.samefile(fresh / "conf" / "config.ini", config)
    assert (old / "conf" / "config.ini").read_text().endswith("http://old\n")  # never overwritten
    assert len(warnings) == 1 and str(old / "conf" / "config.ini") in warnings[0]
    assert (home / "tmp").is_dir()
    warnings.clear()
    point_tree_configs([fresh / "plugins"], home, config, warnings.append)  # already ours: silent
    assert warnings == []


# --- job dir records ------------------------------------------------------------------------
def test_job_dir_records_as_the_original(jobs: JobFiles) -> None:
    produced = jobs.tmp / "made.txt"
    filepath = script_op("fileops/mk_1", f'echo x > {produced}\necho "{{\\"f\\": \\"{produced}\\"}}" > "$OUTPUT_PATH"\n',
                         output={"f": {"type": "filepath"}})
    silent = script_op("quiet_2", "true\n", output={})
    native = {"opId": "native/echo_3", "opName": "native/echo", "opType": "native", "opt": {"text": "hello"},
              "desc": {"text": "text"}}
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner",
                                                      "operations": [filepath, silent, native]}]}]}
    rt, outcome = jobs.run("7201", params)
    root = rt.jobdir.root
    assert outcome.status == "succeed", rt.jobdir.node_log("p", "local-0-0").read_text()
    out = json.loads(rt.jobdir.node_output("local-0-0").read_text())
    assert out["fileops/mk_1"]["f"] == "output-op/local-0-0/fileops/mk_1/made.txt"
    assert (root / out["fileops/mk_1"]["f"]).read_text() == "x\n"
    assert not (root / "output-op/local-0-0/quiet_2.json").exists()  # no {} file
    inputs = json.loads((root / "input/local-0-0.json").read_text())
    assert set(inputs) == {"fileops/mk_1", "quiet_2", "native/echo_3"}
    assert inputs["native/echo_3"]["options"] == {"text": "hello"}
    assert (root / "livedata/p/local-0-0").is_dir()
