"""The rules of statuses and op types, defined once (models/status.py, models/optype.py), and the
yes/no spelling shared by config, descriptors and option values (models/flags.py)."""
from __future__ import annotations

import json

import pytest

from autoexec.events.stream import outcome_of
from autoexec.models.flags import is_true, parse_flag
from autoexec.models.optype import ExecKind, OpType, PluginTree
from autoexec.models.status import Status

# what the status files and the console have always carried
ON_DISK = {"pending", "running", "waitInput", "succeed", "completed", "ignored", "failed", "aborted", "paused",
           "skipped", "crashed"}


def test_values_are_the_recorded_strings() -> None:
    assert {s.value for s in Status} == ON_DISK
    assert json.dumps({"status": Status.WAIT_INPUT}) == '{"status": "waitInput"}'
    assert f"status:{Status.SUCCEED}." == "status:succeed." and str(Status.FAILED) == "failed"
    assert Status.of("aborted") is Status.ABORTED
    assert Status.of(None) is Status.PENDING and Status.of("bogus", Status.FAILED) is Status.FAILED


@pytest.mark.parametrize("status", list(Status))
def test_failure_while_aborting_counts_as_aborted(status: Status) -> None:
    escalated = status.while_aborting(True)
    if status in (Status.FAILED, Status.IGNORED):
        assert escalated is Status.ABORTED
    else:
        assert escalated is status
    assert status.while_aborting(False) is status


def test_worst_of_ordering() -> None:
    assert Status.worst(["succeed", "paused", "failed", "aborted"]) is Status.ABORTED
    assert Status.worst(["paused", "failed", "completed"]) is Status.FAILED
    assert Status.worst([Status.SUCCEED, Status.PAUSED, Status.IGNORED]) is Status.PAUSED
    assert Status.worst(["succeed", "completed", "ignored", "skipped"]) is Status.SUCCEED
    assert Status.worst([], default=Status.PENDING) is Status.PENDING
    assert outcome_of({"a": "completed", "b": "failed"}) is Status.FAILED
    assert outcome_of({}) is Status.SUCCEED


def test_failed_final_done_and_hint() -> None:
    assert {s for s in Status if s.failed} == {Status.FAILED, Status.ABORTED}
    assert {s for s in Status if not s.final} == {Status.PENDING, Status.RUNNING, Status.WAIT_INPUT}
    assert {s for s in Status if s.done} == {Status.SUCCEED, Status.IGNORED}
    assert [s.hint for s in (Status.SUCCEED, Status.IGNORED, Status.PAUSED, Status.FAILED, Status.ABORTED,
                             Status.RUNNING)] == ["FINE:", "WARN:", "WARN:", "ERROR:", "ERROR:", "INFO:"]


def test_op_types_one_table() -> None:
    expected = {"runner": ("local", "local", "runner"), "local": ("local", "local", "runner"),
                "sqlfile": ("local", "local", "sqlfile"), "target": ("remote", "remote", "target"),
                "remote": ("remote", "remote", "target"), "runner_target": ("localremote", "local", "runner_target"),
                "localremote": ("localremote", "local", "runner_target"), "native": ("native", "local", "native")}
    assert {t.value: (t.kind.value, t.tree.value, t.canonical.value) for t in OpType} == expected
    assert OpType.canonical_names() == ("runner", "target", "runner_target", "native", "sqlfile")
    assert {t.value for t in OpType if t.runs_on_runner} == {"runner", "local", "sqlfile"}
    assert ExecKind.REMOTE.where == "on remote OS" and ExecKind.NATIVE.where == ""
    assert OpType.for_tree(PluginTree.REMOTE, "anything") == "target"
    assert OpType.for_tree("local", "shell") == "shell"  # left for the model to refuse


@pytest.mark.parametrize(("value", "expected"), [
    ("1", True), ("true", True), (" Yes ", True), ("ON", True), ("y", True), (True, True), (2, True),
    ("0", False), ("False", False), ("no", False), ("off", False), ("n", False), (False, False), (0, False),
    ("", None), (None, None), ("maybe", None), ([], None),
])
def test_one_yes_no_spelling(value: object, expected: bool | None) -> None:
    assert parse_flag(value) is expected
    assert is_true(value) is (expected is True)
