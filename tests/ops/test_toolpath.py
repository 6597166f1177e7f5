"""The one tool lookup: which plugin dir provides a tool, which names may be looked up."""
from __future__ import annotations

from pathlib import Path

import pytest

from autoexec.conf.config import BUNDLED_PLUGINS
from autoexec.ops.toolpath import ToolNotFound, find_tool, tool_parts


def put(root: Path, *names: str) -> Path:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"opType": "runner"}' if name.endswith(".json") else "#!/bin/sh\n")
    return root


def test_earlier_dir_wins_and_kinds(tmp_path: Path) -> None:
    override = put(tmp_path / "plugins", "local/demo/local.json", "local/demo/local", "local/native/setenv.json")
    dirs = [override, BUNDLED_PLUGINS]
    found = find_tool("demo/local", "runner", dirs)
    assert (found.plugin_dir, found.descriptor, found.runnable()) == (
        override, override / "local/demo/local.json", override / "local/demo/local")
    assert find_tool("demo/local", "local", dirs) == found  # the tree or an opType (old names too)
    remote = find_tool("demo/remote", "target", dirs)
    assert (remote.descriptor, remote.executable) == (BUNDLED_PLUGINS / "remote/demo/remote.json",
                                                      BUNDLED_PLUGINS / "remote/demo/remote")
    assert find_tool("demo/remote", "remote", dirs) == remote
    with pytest.raises(ToolNotFound, match="unknown tool kind 'elsewhere'"):
        find_tool("demo/local", "elsewhere", dirs)


def test_executable_without_descriptor_runs(tmp_path: Path) -> None:
    """Estates' own tools often have no ``.json``: found by path, as the original runs them."""
    own = put(tmp_path / "own", "local/estate/backup")
    found = find_tool("estate/backup", "local", [own, BUNDLED_PLUGINS])
    assert found.descriptor is None and found.runnable() == own / "local/estate/backup"
    bare = put(tmp_path / "bare", "local/standalone")  # no bundle: plugins/local/<tool>
    assert find_tool("standalone", "local", [bare]).runnable() == bare / "local/standalone"


def test_descriptor_only_native_has_no_executable(tmp_path: Path) -> None:
    home = put(tmp_path / "home", "local/native/setenv.json")
    found = find_tool("native/setenv", "native", [home, BUNDLED_PLUGINS])
    assert (found.descriptor, found.executable) == (home / "local/native/setenv.json", None)


def test_one_dir_provides_the_whole_tool(tmp_path: Path) -> None:
    """Descriptor in an earlier dir, executable in a later one: the earlier dir is the tool, and
    running it fails (one line, the op and the paths) rather than pairing the descriptor with
    another dir's executable. An executable alone likewise hides a later descriptor."""
    first = put(tmp_path / "first", "local/demo/tool.json", "local/demo/exe")
    second = put(tmp_path / "second", "local/demo/tool", "local/demo/exe", "local/demo/exe.json")
    found = find_tool("demo/tool", "local", [first, second])
    assert (found.plugin_dir, found.descriptor, found.executable) == (first, first / "local/demo/tool.json", None)
    with pytest.raises(ToolNotFound) as info:
        found.runnable()
    message = str(info.value)
    assert message == (f"Plugin not exists demo/tool (only its descriptor {first / 'local/demo/tool.json'}, "
                       f"which hides later plugin dirs; looked in {first / 'local/demo/tool'})")
    exe = find_tool("demo/exe", "local", [first, second])
    assert (exe.descriptor, exe.runnable()) == (None, first / "local/demo/exe")
    assert find_tool("demo/tool", "local", [second, first]).runnable() == second / "local/demo/tool"


def test_not_found_names_op_and_every_path(tmp_path: Path) -> None:
    a, b = tmp_path / "a", put(tmp_path / "b", "local/basic/nope.d/x")  # a directory is no tool
    with pytest.raises(ToolNotFound) as info:
        find_tool("basic/nope.d", "local", [a, b])
    assert str(info.value) == ("Plugin not exists basic/nope.d (no executable or .json descriptor in "
                               f"{a / 'local/basic/nope.d'}, {b / 'local/basic/nope.d'})")
    with pytest.raises(ToolNotFound, match="Plugin not exists remote/only"):
        find_tool("remote/only", "remote", [put(tmp_path / "c", "local/remote/only")])


@pytest.mark.parametrize(("name", "problem"), [
    ("", "it is empty"),
    ("/abs/x", "it is an absolute path"),
    ("/", "it is an absolute path"),
    ("../../etc/passwd", "it has a '..' part"),
    ("demo/../../x", "it has a '..' part"),
    ("demo/..", "it has a '..' part"),
    ("./demo/x", "it has a '.' part"),
    ("demo/.", "it has a '.' part"),
    ("a//b", "it has an empty part"),
    ("demo/", "it has an empty part"),
    ("demo\\tool", "it contains a backslash"),
    ("..\\..\\x", "it contains a backslash"),
    ("demo/to\nol", "it contains a control character"),
    ("demo/to\x00ol", "it contains a control character"),
    ("demo/\x7f", "it contains a control character"),
])
def test_rejected_names(tmp_path: Path, name: str, problem: str) -> None:
    """Refused before any file is looked at, also where a same-named file exists."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("x")
    with pytest.raises(ToolNotFound) as info:
        find_tool(name, "local", [tmp_path / "plugins", BUNDLED_PLUGINS])
    assert str(info.value) == f"invalid tool name {name!r}: {problem}"


@pytest.mark.parametrize("name", ["demo/local", "tool", "a/b/c", "demo/tool-1.v2", "démo/outil", "..x/y..", "a b/c"])
def test_accepted_names(name: str) -> None:
    assert tool_parts(name) == tuple(name.split("/"))
