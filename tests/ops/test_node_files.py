"""The per-node files written on the hot path keep their exact names, bytes and semantics now that
they go through plain descriptors and string paths (autoexec.jobdir.store, autoexec.jobdir.logs, autoexec.jobdir.layout)
and the tool environment comes from a per-job template (autoexec.ops.childenv)."""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from autoexec.jobdir import logs, store
from autoexec.ops.toolenv import library_env
from autoexec.jobdir.layout import JobDir, node_triple
from autoexec.jobdir.logs import NodeLog, StampedWriter, link_history
from autoexec.ops.childenv import template_for
from autoexec.jobdir.store import NodeOutput, NodeStatus
from tests.fixtures_core import JobFiles, nodes_lines, script_op


# --- names ------------------------------------------------------------------------------
def test_node_paths_are_the_contract_names(tmp_path: Path) -> None:
    jd = JobDir.for_job(tmp_path, "12345")
    root = f"{tmp_path}/job/123/45"
    paths = jd.node_paths("a/b", node_triple("10.0.0.1", 22, 7))
    assert (paths.log, paths.hislog_dir, paths.status) == (f"{root}/log/a_b/10.0.0.1-22-7.txt",
                                                           f"{root}/log/a_b/10.0.0.1-22-7.hislog",
                                                           f"{root}/status/a_b/10.0.0.1-22-7.json")
    assert (paths.output, paths.input) == (f"{root}/output/10.0.0.1-22-7.json", f"{root}/input/10.0.0.1-22-7.json")
    assert paths.op_output("demo/../tool_1") == f"{root}/output-op/10.0.0.1-22-7/demo/__/tool_1.json"
    assert paths.livedata("op_1") == f"{root}/livedata/a_b/10.0.0.1-22-7/op_1.json"


# --- JSON files -------------------------------------------------------------------------
DOC = {"b": [1, 2.5, None, True], "a": {"中文": "é", "x": ""}, "op/1": {"options": {}, "arguments": []}}


def test_json_text_is_what_json_dumps_gives(tmp_path: Path) -> None:
    for indent in (None, 4):
        assert store.dumps(DOC, indent) == json.dumps(DOC, ensure_ascii=False, indent=indent)
    target = tmp_path / "sub" / "doc.json"
    store.write_json_atomic(target, DOC, indent=4)
    assert target.read_bytes() == json.dumps(DOC, ensure_ascii=False, indent=4).encode("utf-8")
    store.write_json_atomic(str(target), {"x": 1})
    assert target.read_bytes() == b'{"x": 1}'
    assert [p.name for p in target.parent.iterdir()] == ["doc.json"]  # no temp file left
    with pytest.raises(TypeError):
        store.write_json_atomic(target, {"x": object()})
    assert [p.name for p in target.parent.iterdir()] == ["doc.json"]


def test_read_json_is_none_for_missing_invalid_or_non_utf8(tmp_path: Path) -> None:
    doc = tmp_path / "d.json"
    assert store.read_json(doc) is None
    doc.write_bytes(b"\xef\xbb\xbf{}")  # a BOM: invalid, as with a text-mode read
    assert store.read_json(doc) is None
    doc.write_bytes(b'{"a": "\xff"}')
    assert store.read_json(doc) is None
    doc.write_bytes(b'{"a": 1}\r\n   ')
    assert store.read_json(str(doc)) == {"a": 1}
    doc.write_bytes(json.dumps({"big": "x" * 200000}).encode())
    assert len(store.read_json(doc)["big"]) == 200000


def test_ensure_dir_says_whether_it_created(tmp_path: Path) -> None:
    assert store.ensure_dir(str(tmp_path / "a" / "b")) is True
    assert store.ensure_dir(str(tmp_path / "a" / "b")) is False
    (tmp_path / "f").write_text("")
    with pytest.raises(FileExistsError):
        store.ensure_dir(str(tmp_path / "f"))


def test_status_records_the_saving_process(tmp_path: Path) -> None:
    path = tmp_path / "status" / "n.json"
    child = os.fork()
    if child == 0:
        status = NodeStatus(path, "1", "ph", None)
        status.set_status("running")
        status.close()
        os._exit(0)
    _, code = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(code) == 0
    assert json.loads(path.read_text())["pid"] == child


# --- logs -------------------------------------------------------------------------------
STAMP = re.compile(r"^\d\d:\d\d:\d\d $")


def test_lines_are_stamped_and_batched_lines_go_out_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[bytes] = []
    real_write = os.write
    monkeypatch.setattr(store.os, "write", lambda fd, data: writes.append(bytes(data)) or real_write(fd, data))
    log = StampedWriter(tmp_path / "x" / "log.txt", append=False)
    log.line("one")
    with log.batch():
        log.line("WARN: two")
        with log.batch():  # part of the outer batch
            log.lines(["three", "ERROR: four"])
        log.write("fi")
        assert len(writes) == 1
    assert len(writes) == 2
    log.write("ve\nsix")
    log.close()
    text = (tmp_path / "x" / "log.txt").read_text()
    lines = text.splitlines()
    assert [ln[9:] for ln in lines] == ["one", "WARN: two", "three", "ERROR: four", "five", "six"]
    assert all(STAMP.match(ln[:9]) for ln in lines)
    assert log.warn_count == 2
    assert writes[1].count(b"\n") == 3
    with pytest.raises(ValueError):
        log.line("closed")


def test_unbatched_writes_what_was_collected_and_then_each_line_at_once(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    log = StampedWriter(path)
    with log.batch():
        log.line("before the wait")
        assert path.read_text() == ""
        with log.unbatched():
            assert path.read_text().endswith(" before the wait\n")
            log.line("during the wait")
            assert path.read_text().endswith(" during the wait\n")
        log.line("after the wait")
        assert path.read_text().endswith(" during the wait\n")
    assert path.read_text().endswith(" after the wait\n")
    log.line("unbatched")
    assert path.read_text().endswith(" unbatched\n")


def test_close_writes_what_is_batched(tmp_path: Path) -> None:
    log = StampedWriter(tmp_path / "log.txt")
    with log.batch():
        log.line("held")
        log.close()
    assert (tmp_path / "log.txt").read_text().endswith(" held\n")


def test_stamp_is_strftime() -> None:
    # Against time.time(), the stamp's clock: time.strftime() without a time reads the coarse
    # clock, which may still be in the previous second for a few ms after the boundary.
    def text(moment: float) -> str:
        return time.strftime("%H:%M:%S ", time.localtime(moment))

    for _ in range(3):
        before = time.time()
        stamp = logs._stamp()
        after = time.time()
        assert stamp in (text(before), text(after))
        time.sleep(0.4)


def test_history_links_count_up_within_a_second(tmp_path: Path) -> None:
    source = tmp_path / "log.txt"
    source.write_text("x")
    for attempt in range(2):
        folder = tmp_path / f"log{attempt}.hislog"
        names = [os.path.basename(link_history(source, folder, "running.u") or "") for _ in range(3)]
        base = names[0].split(".")[0]
        if all(n.startswith(base + ".") or n.startswith(base + "-") for n in names):
            break  # else the three calls crossed a second boundary: once more, in a fresh folder
    assert re.fullmatch(r"\d{8}-\d{6}", base)
    assert names == [f"{base}.running.u.txt", f"{base}-1.running.u.txt", f"{base}-2.running.u.txt"]
    assert link_history(source, folder, "other", new_directory=True) is not None  # folder exists: fine
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError):
        link_history(source, tmp_path / "file", "x")


def test_node_log_rerun_gets_a_fresh_inode_and_history_keeps_the_old_text(tmp_path: Path) -> None:
    path, history = tmp_path / "log" / "ph" / "n.txt", tmp_path / "log" / "ph" / "n.hislog"
    first = NodeLog(path, history, "alice")
    first.line("first run")
    first.finish("failed")
    time.sleep(1.05)
    second = NodeLog(str(path), str(history), "alice")
    second.line("second run")
    assert sorted(p.name.split(".", 1)[1] for p in history.iterdir()) == ["failed.alice.txt", "running.alice.txt"]
    second.finish("succeed")
    texts = {p.name.split(".", 1)[1]: p.read_text() for p in history.iterdir()}
    assert texts["failed.alice.txt"].endswith("first run\n") and texts["succeed.alice.txt"].endswith("second run\n")
    assert path.read_text() == texts["succeed.alice.txt"] and os.stat(path).st_nlink == 2


# --- tool environment -------------------------------------------------------------------
def _reference_env(ctx, op, plugin_dir: Path, to_target: bool) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The per-node build the template replaced, verbatim."""
    rt, jd, triple = ctx.rt, ctx.jobdir, ctx.triple
    env = rt.env.snapshot()
    libs = library_env(plugin_dir, rt.config.plugin_dirs, env)
    out_path = jd.op_output(triple, op.opId)
    env.update({
        "TERM": "dumb", "GROUP_NO": str(ctx.plan.group_no), "OUTPUT_DIR": str(jd.op_output_dir(triple)),
        "OUTPUT_PATH": str(out_path), "OPERATION_ID": op.opId,
        "LIVEDATA_PATH": str(jd.livedata(ctx.plan.name, triple, op.opId)),
        "NODE_OUTPUT_PATH": str(jd.node_output(triple)),
        "PATH": libs["PATH"], "PYTHONPATH": libs["PYTHONPATH"], "PERL5LIB": libs["PERL5LIB"],
        "AUTOEXEC_PHASE_NAME": ctx.plan.name,
        "AUTOEXEC_NODE": json.dumps(ctx.node.tool_dict(ctx.password), ensure_ascii=False),
        "AUTOEXEC_NODES_PATH": str(ctx.plan.nodes_path),
    })
    if to_target:
        env.update({"NODE_HOST": ctx.node.host, "NODE_PORT": ctx.node.port_text, "NODE_NAME": ctx.node.nodeName or ""})
        if ctx.password:
            env["AUTOEXEC_NODE_PASSWORD"] = ctx.password
    return env


def _contexts(jobs: JobFiles):  # type: ignore[no-untyped-def]
    from autoexec.engine.groups import plan_phase
    from autoexec.ops.nodectx import NodeContext

    params = {"runFlow": [{"groupNo": 2, "phases": [{"phaseName": "p", "phaseType": "runner_target",
                                                      "operations": [script_op("a/s_1", "echo", "runner_target")]}]}]}
    text = nodes_lines(2) + json.dumps({"resourceId": 900, "runnerId": 1, "host": "h", "port": None,
                                        "protocol": "local"}) + "\n"
    rt = jobs.runtime("61", params, text)
    for name, value in {"OUTPUT_DIR": "stale", "PERL5LIB": "/perl"}.items():  # keys the update overrides keep their place
        rt.env.set(name, value, scope="process")
    group = rt.params.runFlow[0]
    plan = plan_phase(rt, group, group.phases[0], 1, None)
    for node in plan.nodes:
        paths = rt.jobdir.node_paths(plan.name, node.triple)
        log = NodeLog(paths.log, paths.hislog_dir, "u")
        yield rt, NodeContext(rt, plan, node, NodeStatus(paths.status, rt.job_id, plan.name, node),
                              NodeOutput(paths.output, rt.job_id, node), log, paths), group.phases[0].operations[0]


def test_tool_env_has_the_per_node_entries_in_the_per_node_order(jobs: JobFiles, tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugins" / "x"
    seen = 0
    for _rt, ctx, op in _contexts(jobs):
        for to_target in (True, False):
            template = template_for(ctx, plugin_dir, to_target)
            env = template.render(ctx, op, ctx.paths.op_output(op.opId))
            assert list(env.items()) == list(_reference_env(ctx, op, plugin_dir, to_target).items())
            seen += 1
        ctx.log.close()
    assert seen == 6


def test_tool_env_follows_job_env_changes(jobs: JobFiles, tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugins" / "x"
    rt, ctx, op = next(_contexts(jobs))
    first = template_for(ctx, plugin_dir, True)
    assert template_for(ctx, plugin_dir, True) is first
    rt.env.set("GLOBAL_FROM_SETENV", "v1", scope="global")
    env = template_for(ctx, plugin_dir, True).render(ctx, op, "out")
    assert env["GLOBAL_FROM_SETENV"] == "v1"
    rt.env.set("PATH", "/only/here", scope="process")
    env = template_for(ctx, plugin_dir, True).render(ctx, op, "out")
    assert env["PATH"].endswith(":/only/here") and env == _reference_env(ctx, op, plugin_dir, True) | {"OUTPUT_PATH": "out"}
    ctx.log.close()
