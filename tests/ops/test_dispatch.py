"""Op dispatch (:mod:`autoexec.ops.dispatch`) driven directly: where an op may run, a runner
child's outcome (exit status, signal, fail patterns, outputs, recorded inputs), and the remote
checks made before any connection. Runner children are real local processes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from autoexec.models.params import Operation
from autoexec.ops.dispatch import exit_phrase, run_operation
from autoexec.ops.failkeys import FailKeys
from autoexec.ops.nodectx import NodeContext
from tests.fixtures_core import JobFiles, nodes_lines, script_op
from tests.node_context import Contexts, log_text, open_contexts, read

OUT = 'printf \'%s\' \'{json}\' > "$OUTPUT_PATH"\n'


@pytest.fixture
def contexts(jobs: JobFiles) -> Iterator[Contexts]:
    yield from open_contexts(jobs)


def _run(ctx: NodeContext, index: int = 0) -> Any:
    return run_operation(ctx, ctx.plan.phase.operations[index])


def test_a_target_op_cannot_run_on_the_runner_node(contexts: Contexts) -> None:
    ctx = contexts.make("1", [script_op("t_1", "true\n", "target")])
    outcome = _run(ctx)
    assert outcome.final == "failed"
    assert "Operation t_1 of type target cannot run on the runner node" in outcome.message
    assert f"ERROR: {outcome.message}" in log_text(ctx)


def test_a_runner_op_cannot_run_on_a_target_node(contexts: Contexts) -> None:
    ctx = contexts.make("2", [script_op("t_1", "true\n", "runner_target")], "runner_target", nodes_lines(1))
    assert ctx.node.resourceId == 101
    outcome = run_operation(ctx, Operation.model_validate(script_op("r_1", "true\n", "runner")))
    assert outcome.final == "failed"
    assert "Operation r_1 of type runner runs only on the runner, not on target node 10.1.0.1" in outcome.message


def test_a_runner_child_succeeds_with_its_outputs_and_declared_defaults(contexts: Contexts) -> None:
    op = script_op("x_1", OUT.format(json='{"answer": "42"}'),
                   output={"answer": {"type": "text"}, "missing": {"type": "text", "defaultValue": "d"}})
    ctx = contexts.make("3", [op])
    outcome = _run(ctx)
    assert (outcome.final, outcome.exit_code) == ("succeed", 0)
    assert outcome.outputs == {"answer": "42", "missing": "d"}
    assert read(ctx.paths.op_output("x_1")) == {"answer": "42", "missing": "d"}
    assert ctx.output.data["x_1"] == {"answer": "42", "missing": "d"}


def test_a_runner_child_exiting_non_zero_fails_naming_its_status(contexts: Contexts) -> None:
    ctx = contexts.make("4", [script_op("x_1", "echo on stdout\nexit 5\n")])
    outcome = _run(ctx)
    assert (outcome.final, outcome.exit_code) == ("failed", 5)
    assert outcome.message == "x exited with status 5"
    log = log_text(ctx)
    assert "on stdout" in log and "ERROR: x exited with status 5" in log
    assert not Path(ctx.paths.op_output("x_1")).exists()


def test_a_runner_child_killed_by_a_signal_is_named_by_it(contexts: Contexts) -> None:
    ctx = contexts.make("5", [script_op("x_1", "kill -KILL $$\n")])
    outcome = _run(ctx)
    assert outcome.final == "failed" and "SIGKILL" in outcome.message


def test_a_fail_pattern_in_the_output_fails_an_op_that_exited_zero(contexts: Contexts) -> None:
    ctx = contexts.make("6", [script_op("x_1", "echo 'FATAL: disk gone'\nexit 0\n")])
    ctx.fail_matcher = FailKeys(["FATAL"])
    outcome = _run(ctx)
    assert (outcome.final, outcome.exit_code) == ("failed", 0)
    assert "matched a fail pattern" in outcome.message


def test_inputs_are_recorded_per_node_with_secrets_masked(contexts: Contexts) -> None:
    """A password option is masked by type; a known secret inside a text option by the job's masker."""
    op = script_op("x_1", "true\n", opt={"user": "bob", "pass": "pw-option-secret", "note": "uses node-pw-secret"},
                   desc={"user": "text", "pass": "password", "note": "text"})
    ctx = contexts.make("7", [op])
    ctx.rt.masker.add(["node-pw-secret"])
    assert _run(ctx).final == "succeed"
    recorded = read(ctx.paths.input)["x_1"]["options"]
    assert recorded["user"] == "bob" and recorded["pass"] == "******"
    assert "node-pw-secret" not in recorded["note"] and recorded["note"].startswith("uses ")
    assert "pw-option-secret" not in log_text(ctx) and "node-pw-secret" not in log_text(ctx)


def test_a_tool_that_does_not_exist_fails_with_one_line(contexts: Contexts) -> None:
    ctx = contexts.make("8", [{"opId": "n_1", "opName": "nosuch/tool", "opType": "runner", "opt": {}, "desc": {}}])
    outcome = _run(ctx)
    assert outcome.final == "failed" and "nosuch/tool" in outcome.message and "\n" not in outcome.message


def test_a_console_script_without_a_console_fails_saying_what_to_configure(contexts: Contexts) -> None:
    ctx = contexts.make("9", [{"opId": "s_1", "opName": "s", "opType": "runner", "isScript": 1, "scriptId": 77,
                               "interpreter": "bash", "opt": {}, "desc": {}}])
    outcome = _run(ctx)
    assert outcome.final == "failed" and "custom script 77" in outcome.message and "no console is configured" in outcome.message


def test_a_single_node_phase_feeds_the_runner_outputs(contexts: Contexts) -> None:
    op = script_op("x_1", OUT.format(json='{"v": "from-node"}'), "runner_target", output={"v": {"type": "text"}})
    ctx = contexts.make("10", [op], "runner_target", nodes_lines(1))
    assert _run(ctx).final == "succeed"
    assert ctx.rt.runner_output is not None and ctx.rt.runner_output.data["x_1"] == {"v": "from-node"}
    assert ctx.output.data["x_1"] == {"v": "from-node"}


def test_a_filepath_output_outside_the_job_dir_is_copied_into_it(contexts: Contexts, tmp_path: Path) -> None:
    report = tmp_path / "outside" / "report.txt"
    report.parent.mkdir()
    script = f"echo content > {report}\n" + OUT.format(json=json.dumps({"f": str(report)}))
    ctx = contexts.make("11", [script_op("x_1", script, output={"f": {"type": "filepath"}})])
    outcome = _run(ctx)
    assert outcome.final == "succeed"
    assert outcome.outputs["f"] == "output-op/local-0-0/x_1/report.txt"
    assert (ctx.jobdir.root / outcome.outputs["f"]).read_text() == "content\n"


def test_a_remote_op_needs_an_ssh_or_tagent_node(contexts: Contexts) -> None:
    ctx = contexts.make("12", [script_op("t_1", "true\n", "target")], "target", nodes_lines(1, protocol="winrm"))
    outcome = _run(ctx)
    assert outcome.final == "failed" and "protocol 'winrm' cannot run target operation t_1" in outcome.message


def test_a_remote_op_without_credentials_fails_before_connecting(contexts: Contexts) -> None:
    ctx = contexts.make("13", [script_op("t_1", "true\n", "target")], "target", nodes_lines(1, password=""))
    outcome = _run(ctx)
    assert outcome.final == "failed" and outcome.message == "Can not find password for u@10.1.0.1:22"
    assert ctx.transport is None


def test_in_process_native_ops_run_inside_the_runner(contexts: Contexts) -> None:
    ctx = contexts.make("14", [{"opId": "e_1", "opName": "native/echo", "opType": "native",
                                "opt": {"text": "said inside"}, "desc": {}}])
    outcome = _run(ctx)
    assert outcome.final == "succeed"
    assert "said inside" in log_text(ctx)
    assert ctx.status.op_status("e_1") is None, "no child process was recorded for it"


@pytest.mark.parametrize(("code", "phrase"), [
    (0, "exited with status 0"),
    (3, "exited with status 3"),
    (-9, "was killed by signal 9 (SIGKILL)"),
    (143, "exited with status 143 (128+15: SIGTERM?)"),
    (None, "ended without an exit status"),
])
def test_exit_phrase_names_the_signal_where_the_status_shows_one(code: int | None, phrase: str) -> None:
    assert exit_phrase(code) == phrase


def test_op_kind_decides_the_route() -> None:
    kinds = {t: Operation(opId="a", opName="b", opType=t).kind for t in ("runner", "target", "runner_target", "native")}
    assert kinds == {"runner": "local", "target": "remote", "runner_target": "localremote", "native": "native"}
