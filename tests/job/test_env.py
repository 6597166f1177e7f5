"""The job's variables (one write path, scope decides the side effects, hidden values masked) and
the no-console implementation of the console services."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autoexec.job.files import FileParams
from autoexec.job.env import JobEnv
from autoexec.conf.masking import Masker
from autoexec.models.nodes import RUNNER_NODE
from autoexec.models.params import Operation
from autoexec.events.notify import NullNotifier
from autoexec.job.services import ConsoleServices, ConsoleUnavailable, NoConsole
from tests.fixtures_core import JobFiles, nodes_lines, script_op


class _Store:
    """Stands in for the job's MongoDB store: the one method the job env writes through."""

    def __init__(self) -> None:
        self.saved: list[tuple[str, str, str, bool]] = []

    def save_env(self, job_id: str, name: str, value: str, hidden: bool = False) -> None:
        self.saved.append((job_id, name, value, hidden))


def _env(store: Any = None) -> tuple[JobEnv, NullNotifier, Masker]:
    notifier, masker = NullNotifier(), Masker()
    return JobEnv({"PATH": "/bin"}, job_id="7", notifier=notifier, masker=masker, store=store), notifier, masker


def test_scope_decides_what_a_write_does_besides_setting_the_value() -> None:
    store = _Store()
    env, notifier, _ = _env(store)
    env.set("HERE", "1", scope="process")
    assert env["HERE"] == "1" and store.saved == [] and notifier.calls == []
    env.set("SHARED", 2, scope="job")
    assert env.get("SHARED") == "2" and store.saved == [("7", "SHARED", "2", False)] and notifier.calls == []
    env.set("EXPORTED", "v", scope="global")
    assert store.saved[-1] == ("7", "EXPORTED", "v", False)
    assert notifier.calls == [("export_env", {"name": "EXPORTED", "value": "v", "hidden": False})]
    with pytest.raises(ValueError, match="job variable X: unknown scope 'node'"):
        env.set("X", "1", scope="node")  # type: ignore[arg-type]
    assert "X" not in env


def test_without_a_store_job_and_global_writes_still_set_and_notify() -> None:
    env, notifier, _ = _env(store=object())  # no save_env: nowhere to keep it
    env.set("A", "1")
    env.set("B", "2", scope="global")
    assert env.snapshot()["A"] == "1" and [c[0] for c in notifier.calls] == ["export_env"]


def test_a_hidden_value_is_masked_everywhere_but_in_the_tools_environment() -> None:
    store = _Store()
    env, notifier, masker = _env(store)
    env.set("TOKEN", "s3cr3t-value", hidden=True, scope="global")
    assert masker("login with s3cr3t-value") == "login with ******"
    assert env.shown("TOKEN") == "******" and env.shown("PATH") == "/bin" and env.shown("NOPE") is None
    assert env.snapshot()["TOKEN"] == "s3cr3t-value"  # the tool gets the value itself
    assert store.saved == [("7", "TOKEN", "s3cr3t-value", True)]
    assert notifier.calls[-1] == ("export_env", {"name": "TOKEN", "value": "s3cr3t-value", "hidden": True})
    env.set("TOKEN", "public", scope="process")
    assert env.shown("TOKEN") == "public"


def test_reload_sets_stored_values_in_this_process_only() -> None:
    store = _Store()
    env, notifier, _ = _env(store)
    env.reload({"FROM_OTHER_RUNNER": "x", "N": 5})
    env.reload(None)  # the store is unreachable
    assert env["FROM_OTHER_RUNNER"] == "x" and env["N"] == "5"
    assert store.saved == [] and notifier.calls == []


def test_derived_values_are_rebuilt_after_any_write() -> None:
    env, _, _ = _env()
    builds: list[dict[str, str]] = []

    def build(values: dict[str, str]) -> int:
        builds.append(values)
        return len(builds)

    assert env.derived("k", build) == 1 and env.derived("k", build) == 1
    version = env.version
    env.set("PATH", "/bin", scope="process")  # even the same value: every write is one
    assert env.version == version + 1 and env.derived("k", build) == 2
    assert builds[-1]["PATH"] == "/bin" and list(env) == ["PATH"]


def test_no_console_answers_every_request_with_no_console(tmp_path: Path) -> None:
    local = tmp_path / "report.txt"
    local.write_text("data")
    services: ConsoleServices = NoConsole(FileParams(tmp_path / "data", tmp_path / "job" / "file"), "/etc/ax.ini")
    op = Operation.model_validate({"opId": "s_1", "opName": "s", "opType": "runner", "isScript": 1, "scriptId": 9})
    with pytest.raises(ConsoleUnavailable, match=r"custom script 9 .* no console is configured: .* /etc/ax\.ini"):
        services.fetch_script(op)
    assert services.script_libs(op) == []
    assert services.account_password(RUNNER_NODE, "root", "3", "ssh") is None
    assert services.refresh_nodes("phase", "p", 0) is None
    with pytest.raises(ConsoleUnavailable, match="global lock needs the console"):
        services.global_lock({"action": "lock"})
    assert services.file_name(12) is None  # a console file id: nobody to download it from
    assert services.file_name(str(local)) == "report.txt"  # devmode: a local path is linked in
    assert (tmp_path / "job" / "file" / "report.txt").read_text() == "data"
    services.close()


def test_no_console_leaves_an_account_reference_as_written(jobs: JobFiles) -> None:
    show = script_op("show_1", 'echo "account=$1"\n', "runner_target",
                     arg=[{"type": "account", "value": "root/3/ssh"}])
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner_target",
                                                      "operations": [show]}]}]}
    rt, outcome = jobs.run("451", params, nodes_lines(1))
    assert outcome.status == "succeed"
    assert "account=root/3/ssh" in rt.jobdir.node_log("p", "10.1.0.1-22-101").read_text()


def test_devmode_setenv_global_hidden_reaches_later_phases_masked_in_logs(jobs: JobFiles) -> None:
    """native/setenv scope global goes through the job env: the value is exported (devmode: the
    null notifier records it), later phases' tools get it, and no log shows it."""
    set_op = {"opId": "set_1", "opName": "native/setenv", "opType": "native",
              "opt": {"name": "DEPLOY_TOKEN", "value": "tok-98765", "scope": "global", "hidden": "1"},
              "desc": {"name": "text", "value": "text", "scope": "select", "hidden": "text"}}
    show = script_op("show_1", 'echo "token=$DEPLOY_TOKEN"\n[ "$DEPLOY_TOKEN" = tok-98765 ]\n')
    params = {"runFlow": [
        {"groupNo": 0, "phases": [{"phaseName": "a", "phaseType": "runner", "operations": [set_op]}]},
        {"groupNo": 1, "phases": [{"phaseName": "b", "phaseType": "runner", "operations": [show]}]}]}
    rt, outcome = jobs.run("452", params)
    assert outcome.status == "succeed", rt.jobdir.console_log.read_text()
    assert ("export_env", {"name": "DEPLOY_TOKEN", "value": "tok-98765", "hidden": True}) in rt.notifier.calls  # type: ignore[attr-defined]
    logs = rt.jobdir.node_log("a", "local-0-0").read_text() + rt.jobdir.node_log("b", "local-0-0").read_text()
    assert "INFO: Set global env DEPLOY_TOKEN=******" in logs and "token=******" in logs
    assert "tok-98765" not in logs


def test_the_spec_and_the_runtime_are_not_changed_after_construction(jobs: JobFiles) -> None:
    import dataclasses

    rt = jobs.runtime("453", {"runFlow": []})
    with pytest.raises(dataclasses.FrozenInstanceError):
        rt.spec.force = True  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rt.notifier = NullNotifier()  # type: ignore[misc]
    assert rt.spec.phase_filter is None and rt.job_id == rt.spec.job_id == "453"
    rt.console.close()
