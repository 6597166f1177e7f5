from __future__ import annotations

from pathlib import Path

import pytest

from autoexec.jobdir.layout import JobDir, UnsafeName, node_triple, safe_name, safe_relpath, split_job_id


@pytest.mark.parametrize("job_id, expected", [("624490098515988", "624/490/098/515/988"), ("12345", "123/45"),
                                              ("0", "0"), ("123", "123")])
def test_split_job_id_in_three_character_chunks(job_id: str, expected: str) -> None:
    assert split_job_id(job_id) == expected


@pytest.mark.parametrize("bad", ["", "../1", "12/3", "1 2", "a\x00"])
def test_job_id_that_could_escape_is_refused(bad: str) -> None:
    with pytest.raises(UnsafeName):
        split_job_id(bad)


@pytest.mark.parametrize("name", ["..", ".", "../../etc", "a/b", "a\\b", "x\x00y", ""])
def test_node_derived_names_stay_inside_the_job_dir(tmp_path: Path, name: str) -> None:
    jd = JobDir(tmp_path / "job")
    for path in (jd.node_log(name, node_triple(name, 22, 1)), jd.node_status(name, node_triple(name, "", 7)),
                 jd.op_output(node_triple(name, 1, 2), name), jd.livedata(name, name, name)):
        assert path.resolve().is_relative_to(jd.root.resolve()), path
    assert "/" not in safe_name(name)


def test_op_ids_keep_their_bundle_hierarchy() -> None:
    assert safe_relpath("demo/tool_1") == "demo/tool_1"
    assert safe_relpath("../../x") == "__/__/x"


def test_names_match_the_original_layout(tmp_path: Path) -> None:
    jd = JobDir.for_job(tmp_path, "12345")
    triple = node_triple("192.168.0.1", 3306, 42)
    assert triple == "192.168.0.1-3306-42"
    assert jd.node_status("ph", triple) == tmp_path / "job/123/45/status/ph/192.168.0.1-3306-42.json"
    assert jd.node_log("ph", triple) == tmp_path / "job/123/45/log/ph/192.168.0.1-3306-42.txt"
    assert jd.op_output(triple, "op_1") == tmp_path / "job/123/45/output-op/192.168.0.1-3306-42/op_1.json"
    assert jd.node_output("local-0-0") == tmp_path / "job/123/45/output/local-0-0.json"
