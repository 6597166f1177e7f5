from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from autoexec.conf.config import BUNDLED_PLUGINS
from autoexec.ops.descriptor import (
    DescriptorError,
    ToolNotFound,
    discover_tools,
    find_tool,
    load_descriptor,
    parse_descriptor,
)
from autoexec.models.optype import OpType

BUNDLED = [(t.op_name, t.tree, t.path) for t in discover_tools([BUNDLED_PLUGINS])]
EVERY_BUNDLED_JSON = sorted(BUNDLED_PLUGINS.rglob("*.json"))


def test_bundled_set_is_complete() -> None:
    names = {(kind, op) for op, kind, _ in BUNDLED}
    assert {("local", "demo/local"), ("local", "demo/localremote"), ("remote", "demo/remote"),
            ("local", "basic/sleep"), ("local", "basic/echo"), ("local", "basic/getcmdout"),
            ("local", "basic/mergeoutput"), ("local", "basic/extractjson"), ("local", "basic/extracttxt"),
            ("remote", "basic/cmdrun"), ("remote", "basic/sleep")} <= names


@pytest.mark.parametrize(("op_name", "kind", "path"), BUNDLED, ids=[f"{k}/{o}" for o, k, _ in BUNDLED])
def test_every_bundled_descriptor_validates_and_has_executable(op_name: str, kind: str, path: Path) -> None:
    desc = load_descriptor(path)
    assert desc.enabled and desc.kind == kind
    descriptor, executable = find_tool(op_name, kind, [BUNDLED_PLUGINS])
    assert descriptor == path
    assert executable is not None and os.access(executable, os.X_OK)
    assert executable.read_text().startswith("#!")


@pytest.mark.parametrize("path", EVERY_BUNDLED_JSON, ids=[str(p.relative_to(BUNDLED_PLUGINS)) for p in EVERY_BUNDLED_JSON])
def test_every_bundled_json_is_a_valid_descriptor_of_the_catalogue(path: Path) -> None:
    """Every JSON file under the bundled plugins goes through the one model, read as ``--register``
    reads it; none is silently left out of the catalogue (a malformed one fails here)."""
    tree = path.relative_to(BUNDLED_PLUGINS).parts[0]
    desc = load_descriptor(path, tree)
    assert desc.kind == tree and desc.opType.canonical is desc.opType
    assert path in {p for _, _, p in BUNDLED}


def test_op_types_canonical_and_old_names() -> None:
    assert parse_descriptor({"opType": "localremote"}).opType is OpType.RUNNER_TARGET
    assert parse_descriptor({"opType": "local"}).kind == "local"
    assert parse_descriptor({"opType": "remote"}).to_json_dict()["opType"] == "target"


def test_demo_covers_every_output_type() -> None:
    desc = load_descriptor(BUNDLED_PLUGINS / "local/demo/local.json")
    assert {o.type for o in desc.output} >= {"text", "json", "file", "filepath", "password"}
    types = set(desc.option_types().values())
    assert types >= {"text", "json", "select", "multiselect", "password", "textarea", "file", "filepath",
                     "node", "date", "time", "datetime", "account", "phase", "userselect", "switch", "checkbox"}


def test_lenient_shapes_and_extras_kept() -> None:
    desc = parse_descriptor({
        "opType": "runner", "option": [{"opt": "a", "required": "true", "validate": None, "x-extra": 1},
                                        {"opt": "b", "required": False}],
        "argument": {"required": "false", "isConst": "true"}, "output": None, "enable": 0, "opName": "x/y",
    })
    assert [o.required for o in desc.option] == [True, False]
    assert desc.enabled is True and desc.output == [] and desc.argument is not None and desc.argument.isConst
    data = desc.to_json_dict()
    assert data["opName"] == "x/y" and data["enable"] == 0
    assert data["option"][0]["x-extra"] == 1 and data["option"][0]["required"] == "true"
    assert data["option"][0]["validate"] is None
    assert data["argument"]["isConst"] == "true"
    assert parse_descriptor({"opType": "native", "enabled": 0}).enabled is False


def test_defaults_and_types_maps() -> None:
    desc = parse_descriptor({"opType": "target", "option": [{"opt": "t", "type": "password"}],
                             "output": [{"opt": "o", "type": "file", "defaultValue": "a.txt"}, {"opt": "p"}]})
    assert desc.option_types() == {"t": "password"}
    assert desc.output_defaults() == {"o": "a.txt", "p": None}


@pytest.mark.parametrize(("data", "expected"), [
    ({"opType": "shell"}, "opType: must be one of"),
    ({}, "opType: Field required"),
    ({"opType": "runner", "option": [{"opt": "a"}, {"name": "no opt"}]}, "option[1].opt: Field required"),
    ({"opType": "runner", "option": [{"opt": "a", "required": "maybe"}]}, "option[0].required: expected true/false"),
    ({"opType": "runner", "output": [{"opt": ""}]}, "output[0].opt:"),
    ([1], "(top level): expected a JSON object"),
])
def test_bad_descriptor_one_line_error(tmp_path: Path, data: object, expected: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DescriptorError) as info:
        load_descriptor(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message
    assert "\n" not in message


def test_invalid_json_names_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"opType": "runner",\n  "option": [}')
    with pytest.raises(DescriptorError, match=r"broken\.json: invalid JSON at line 2 column"):
        load_descriptor(path)
    with pytest.raises(DescriptorError, match="missing.json: cannot read"):
        load_descriptor(tmp_path / "missing.json")


def test_find_tool_order_native_and_errors(tmp_path: Path) -> None:
    override = tmp_path / "plugins"
    (override / "local" / "demo").mkdir(parents=True)
    (override / "local" / "demo" / "local.json").write_text('{"opType": "runner"}')
    (override / "local" / "demo" / "local").write_text("#!/bin/sh\n")
    (override / "local" / "native").mkdir()
    (override / "local" / "native" / "setenv.json").write_text('{"opType": "native"}')
    dirs = [override, BUNDLED_PLUGINS]
    assert find_tool("demo/local", "runner", dirs) == (override / "local/demo/local.json", override / "local/demo/local")
    assert find_tool("demo/remote", "target", dirs)[0] == BUNDLED_PLUGINS / "remote/demo/remote.json"
    assert find_tool("native/setenv", "native", dirs) == (override / "local/native/setenv.json", None)
    with pytest.raises(ToolNotFound, match="Plugin not exists basic/nope"):
        find_tool("basic/nope", "local", dirs)
    for bad in ("../etc/passwd", "/abs/x", "a//b"):
        with pytest.raises(ToolNotFound):
            find_tool(bad, "local", dirs)
    with pytest.raises(ToolNotFound):
        find_tool("demo/local", "elsewhere", dirs)
