"""Native ops (:mod:`autoexec.ops.native`) run inside the runner, driven directly on a real node
context: what each one changes (node env, job env, console callbacks, the fail matcher) and how
each one fails on bad options."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from autoexec.ops.native import NATIVE_IN_PROCESS, run_native
from autoexec.ops.nodectx import NodeContext
from autoexec.models.params import Operation
from tests.fixtures_core import JobFiles, nodes_lines
from tests.node_context import Contexts, log_text, open_contexts, read


@pytest.fixture
def contexts(jobs: JobFiles) -> Iterator[Contexts]:
    yield from open_contexts(jobs)


def native(tool: str, op_id: str = "n_1", args: list[str] | None = None, **opt: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"opId": op_id, "opName": f"native/{tool}", "opType": "native", "opt": opt, "desc": {}}
    if args is not None:
        op["arg"] = [{"type": "text", "value": a} for a in args]
    return op


def _target(contexts: Contexts, job_id: str, op: dict[str, Any]) -> NodeContext:
    """A target node's context (node env lives in that node's output file)."""
    return contexts.make(job_id, [op], "runner_target", nodes_lines(1))


def _run(ctx: NodeContext) -> Any:
    return run_native(ctx, ctx.plan.phase.operations[0])


def _calls(ctx: NodeContext, name: str) -> list[dict[str, Any]]:
    return [kw for call, kw in ctx.rt.notifier.calls if call == name]  # devmode: a NullNotifier, which records


class EnvStore:
    """Stands in for MongoDB as the job-env store: records ``save_env`` calls."""

    def __init__(self) -> None:
        self.saved: list[tuple[str, str, str, bool]] = []

    def save_env(self, job_id: str, name: str, value: str, hidden: bool = False) -> None:
        self.saved.append((job_id, name, value, hidden))


def test_every_in_process_name_has_a_handler() -> None:
    from autoexec.ops.native import _HANDLERS

    assert set(_HANDLERS) == NATIVE_IN_PROCESS


def test_echo_logs_its_arguments_or_its_text_option(contexts: Contexts) -> None:
    ctx = contexts.make("1", [native("echo", "e_1", args=["hello ", "world"]), native("echo", "e_2", text="from option")])
    assert run_native(ctx, ctx.plan.phase.operations[0]).final == "succeed"
    assert run_native(ctx, ctx.plan.phase.operations[1]).final == "succeed"
    log = log_text(ctx)
    assert "hello world" in log and "from option" in log
    assert set(read(ctx.paths.input)) == {"e_1", "e_2"}, "native ops record their inputs like the others"


def test_failjob_fails_with_its_message(contexts: Contexts) -> None:
    ctx = contexts.make("2", [native("failjob", args=["stop here"]), native("failjob", "n_2")])
    first = run_native(ctx, ctx.plan.phase.operations[0])
    assert (first.final, first.exit_code, first.message) == ("failed", 1, "stop here")
    assert run_native(ctx, ctx.plan.phase.operations[1]).message == "failed by native/failjob"
    assert "ERROR: stop here" in log_text(ctx)


def test_setenv_node_scope_goes_into_the_node_env_only(contexts: Contexts) -> None:
    ctx = _target(contexts, "3", native("setenv", name="COLOR", value="blue", scope="node"))
    assert _run(ctx).final == "succeed"
    assert read(ctx.paths.output)["nodeEnv"] == {"COLOR": "blue"}
    assert ctx.lookup_variable("COLOR") == "blue"
    assert "COLOR" not in ctx.rt.env and _calls(ctx, "export_env") == []


def test_setenv_hidden_is_marked_and_not_logged(contexts: Contexts) -> None:
    ctx = _target(contexts, "4", native("setenv", name="TOKEN", value="t0ken-value", hidden="true"))
    assert _run(ctx).final == "succeed"
    output = read(ctx.paths.output)
    assert output["nodeEnv"] == {"TOKEN": "t0ken-value"} and output["hiddenNodeEnv"] == {"TOKEN": 1}
    log = log_text(ctx)
    assert "INFO: Set node env TOKEN=******" in log and "t0ken-value" not in log


def test_setenv_global_scope_reaches_job_env_store_and_console(contexts: Contexts) -> None:
    ctx = _target(contexts, "5", native("setenv", name="BUILD", value="b-7", scope="global"))
    store = EnvStore()
    ctx.rt.env.store = store  # devmode has no MongoDB: the job env keeps job variables here
    assert _run(ctx).final == "succeed"
    assert ctx.rt.env["BUILD"] == "b-7"
    assert store.saved == [("5", "BUILD", "b-7", False)]
    assert _calls(ctx, "export_env") == [{"name": "BUILD", "value": "b-7", "hidden": False}]
    assert "BUILD" not in (ctx.output.data.get("nodeEnv") or {})


def test_setenv_evaluates_command_substitution_in_the_job_dir(contexts: Contexts) -> None:
    ctx = contexts.make("6", [native("setenv", "s_1", name="SUM", value="$(echo sum-$((1+2)))"),
                              native("setenv", "s_2", name="WHERE", value="$(pwd)")])
    assert run_native(ctx, ctx.plan.phase.operations[0]).final == "succeed"
    assert run_native(ctx, ctx.plan.phase.operations[1]).final == "succeed"
    env = ctx.output.data["nodeEnv"]
    assert env["SUM"] == "sum-3" and env["WHERE"] == str(ctx.jobdir.root)


def test_setenv_without_a_name_fails(contexts: Contexts) -> None:
    ctx = contexts.make("7", [native("setenv", value="x")])
    outcome = _run(ctx)
    assert outcome.final == "failed" and outcome.message == "native/setenv needs option name"


def test_export_sends_defined_variables_and_warns_about_the_rest(contexts: Contexts) -> None:
    ctx = contexts.make("8", [native("export", args=["KNOWN", "UNKNOWN_VAR_X"])])
    ctx.rt.env.set("KNOWN", "k-value", scope="process")
    assert _run(ctx).final == "succeed"
    assert _calls(ctx, "export_env") == [{"name": "KNOWN", "value": "k-value", "hidden": False}]
    assert "WARN: Environment variable UNKNOWN_VAR_X not defined, not exported." in log_text(ctx)


def test_updategparam_tells_the_console_and_needs_a_name(contexts: Contexts) -> None:
    ctx = contexts.make("9", [native("updategparam", name="lastBuild", value="b-9"), native("updategparam", "n_2", value="v")])
    assert run_native(ctx, ctx.plan.phase.operations[0]).final == "succeed"
    assert _calls(ctx, "update_global_param") == [{"key": "lastBuild", "value": "b-9"}]
    bad = run_native(ctx, ctx.plan.phase.operations[1])
    assert bad.final == "failed" and "needs option name" in bad.message
    assert len(_calls(ctx, "update_global_param")) == 1


def test_failkeys_installs_the_node_fail_matcher(contexts: Contexts) -> None:
    ctx = contexts.make("10", [native("failkeys", args=["FATAL", "panic"], operator="or", exclude="harmless")])
    assert ctx.fail_matcher is None
    assert _run(ctx).final == "succeed"
    matcher = ctx.fail_matcher
    assert matcher is not None and matcher.patterns == ("FATAL", "panic") and matcher.operator == "or"
    assert matcher.match("kernel panic now") and not matcher.match("a harmless panic") and not matcher.match("fine")
    assert "INFO: Fail patterns installed: 2 (or)." in log_text(ctx)


@pytest.mark.parametrize(("args", "opt", "says"), [
    (["(unclosed"], {}, "Invalid fail pattern regex"),
    (["x"], {"operator": "xor"}, "Invalid failkeys operator"),
])
def test_failkeys_with_bad_options_fails_and_installs_nothing(contexts: Contexts, args: list[str], opt: dict[str, str],
                                                              says: str) -> None:
    ctx = contexts.make("11", [native("failkeys", args=args, **opt)])
    outcome = _run(ctx)
    assert outcome.final == "failed" and says in outcome.message and ctx.fail_matcher is None


def test_extractprestepstatus_stores_the_previous_op_status(contexts: Contexts) -> None:
    ctx = _target(contexts, "12", native("extractprestepstatus", envname="PREV"))
    ctx.prev_op_status = "ignored"
    assert _run(ctx).final == "succeed"
    assert read(ctx.paths.output)["nodeEnv"] == {"PREV": "ignored"}

    glob = _target(contexts, "13", native("extractprestepstatus", envname="PREV_G", scope="global"))
    glob.prev_op_status = "failed"
    assert _run(glob).final == "succeed"
    assert glob.rt.env["PREV_G"] == "failed"


def test_extractprestepstatus_needs_an_env_name(contexts: Contexts) -> None:
    ctx = contexts.make("14", [native("extractprestepstatus")])
    outcome = _run(ctx)
    assert outcome.final == "failed" and "envname" in outcome.message


def test_an_unresolvable_reference_fails_the_op_before_it_runs(contexts: Contexts) -> None:
    ctx = contexts.make("15", [native("setenv", name="X", value="${x.prev_1.missing}")])
    outcome = _run(ctx)
    assert outcome.final == "failed"
    assert "X" not in ctx.output.data.get("nodeEnv", {}) and "X" not in ctx.rt.env


def test_native_op_names_are_their_last_path_part() -> None:
    assert Operation(opId="a", opName="native/setenv", opType="native").sub_name == "setenv"
