from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoexec.models.nodes import load_nodes, parse_nodes_lines
from autoexec.models.params import JobInputError, load_params, parse_params

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "examples"


def test_console_sample_params_parse_with_unknown_fields_kept(tmp_path: Path) -> None:
    data = json.loads((EXAMPLES / "demo" / "params.json").read_text())
    data["brandNewConsoleField"] = {"x": 1}
    data["runFlow"][0]["phases"][0]["operations"][0]["extraOpField"] = 5
    params = parse_params(data, "p.json")
    assert params.model_extra == {"brandNewConsoleField": {"x": 1}}
    assert params.runFlow[0].phases[0].operations[0].model_extra == {"extraOpField": 5}
    assert params.runFlow[1].gray_scale and not params.runFlow[0].gray_scale


@pytest.mark.skipif(not SHARED.exists(), reason="shared/examples not beside this checkout")
def test_console_format_samples_load() -> None:
    params = load_params(SHARED / "params-console-sample.json")
    assert params.job_id == "624490098515988"
    nodes = load_nodes(SHARED / "nodes-console-sample.jsonl")
    assert nodes.header.totalCount == 2 and nodes.nodes[0].protocolPort == 22


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "params.json"
    bad.write_text('{\n  "jobId": 1,\n  "runFlow": [\n}\n')
    with pytest.raises(JobInputError, match=r"params.json: line 4 column 1: invalid JSON"):
        load_params(bad)


def test_bad_field_is_named() -> None:
    with pytest.raises(JobInputError, match=r"p.json: field runFlow\[0\].phases\[0\].operations\[0\].opType: .*unknown opType 'bogus'"):
        parse_params({"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "a", "operations": [
            {"opId": "x", "opName": "x", "opType": "bogus"}]}]}]}, "p.json")
    with pytest.raises(JobInputError, match=r"field runFlow\[0\].groupNo"):
        parse_params({"runFlow": [{"phases": []}]}, "p.json")


def test_duplicate_phase_names_are_refused() -> None:
    group = {"groupNo": 0, "phases": [{"phaseName": "a"}, {"phaseName": "a"}]}
    with pytest.raises(JobInputError, match="duplicate phase name 'a'"):
        parse_params({"runFlow": [group]}, "p.json")


def test_nodes_protocol_port_normalisation() -> None:
    lines = [json.dumps({"totalCount": 4}),
             json.dumps({"resourceId": 1, "runnerId": 1, "host": "a", "port": 3306, "protocol": "ssh", "protocolPort": 22}),
             json.dumps({"resourceId": 2, "runnerId": 1, "host": "b", "port": 80, "protocol": "ssh", "protocolPort": 22,
                         "servicePorts": {"ssh": 2222}}),
             json.dumps({"resourceId": 3, "runnerId": 1, "host": "c", "port": 80, "protocol": "tagent.3940"}),
             json.dumps({"resourceId": 4, "runnerId": 2, "host": "d", "port": 8080, "protocol": "tagent"})]
    nodes = parse_nodes_lines(lines, "n").nodes
    assert [n.protocolPort for n in nodes] == [22, 2222, 3940, 8080]
    assert nodes[2].protocol == "tagent"
    assert nodes[0].username == "none" and nodes[0].password == ""
    assert "password" not in repr(nodes[0]) and "password" not in nodes[0].public_dict()


def test_nodes_errors_name_line_and_field() -> None:
    header = json.dumps({"totalCount": 1})
    with pytest.raises(JobInputError, match=r"n.jsonl: line 2: field runnerId: Field required"):
        parse_nodes_lines([header, json.dumps({"resourceId": 1, "host": "a"})], "n.jsonl")
    with pytest.raises(JobInputError, match=r"n.jsonl: line 3: invalid JSON"):
        parse_nodes_lines([header, "", "{nope"], "n.jsonl")
    node = json.dumps({"resourceId": 1, "runnerId": 1})
    with pytest.raises(JobInputError, match=r"line 3: duplicate resourceId 1"):
        parse_nodes_lines([header, node, node], "n.jsonl")
