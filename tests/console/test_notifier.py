from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterator

import pytest

from autoexec.console.client import ConsoleClient
from autoexec.console.notifier import ConsoleNotifier
from autoexec.jobdir.layout import JobDir
from autoexec.events.notify import NodeRef, PhaseCounts
from tests.fake_console import FakeConsole

PTE = {"runnerId": 2, "tenant": "develop"}


@pytest.fixture
def notifier(tmp_path: Path, console_client: ConsoleClient) -> Iterator[ConsoleNotifier]:
    n = ConsoleNotifier.open(console_client, tmp_path, job_id="624490098515988", runner_id=2,
                             pass_through_env=PTE, base_delay=0.02, max_delay=0.1, poll_interval=0.05)
    n._clock = lambda: 1700000000.5  # type: ignore[method-assign]
    yield n
    n.close()


def bodies(fake: FakeConsole) -> list[tuple[str, dict]]:
    return [(r.path, r.body) for r in fake.callbacks()]


def test_every_callback_shape(notifier: ConsoleNotifier, fake_console: FakeConsole) -> None:
    t, job = 1700000000.5, "624490098515988"
    notifier.node_status(group_no=1, phase="deploy", node=NodeRef(7, "10.0.0.1", 22), status="failed",
                         fail_ignore=True, warn_count=3)
    notifier.phase_status(group_no=1, phase="deploy", status="completed",
                          counts=PhaseCounts(suc=4, fail=1, skip=2, ignore=1, pause=0, warn=5))
    notifier.round_ended(group_no=1, phase="deploy", round_no=2)
    notifier.fire_next_group(group_no=1)
    notifier.job_status(status="aborted")
    notifier.export_env(name="VER", value="1.2", hidden=True)
    notifier.update_global_param(key="k", value="v")
    assert notifier.flush(5)
    rest = "/neatlogic/api/rest"
    assert bodies(fake_console) == [
        (f"{rest}/autoexec/job/phase/node/status/update",
         {"jobId": job, "groupNo": 1, "phase": "deploy", "resourceId": 7, "host": "10.0.0.1", "port": 22,
          "status": "failed", "failIgnore": 1, "warnCount": 3, "time": t, "passThroughEnv": PTE}),
        (f"{rest}/autoexec/job/phase/status/update",
         {"jobId": job, "groupNo": 1, "phase": "deploy", "status": "completed", "failNodeCount": 1,
          "sucNodeCount": 4, "skipNodeCount": 2, "ignoreFailNodeCount": 1, "warnCount": 5, "time": t,
          "passThroughEnv": PTE}),
        (f"{rest}/autoexec/job/phase/inform/round/end",
         {"jobId": job, "runnerId": 2, "groupNo": 1, "phase": "deploy", "roundNo": 2, "time": t,
          "pid": os.getpid(), "passThroughEnv": PTE}),
        (f"{rest}/autoexec/job/next/group/fire",
         {"jobId": job, "runnerId": 2, "groupNo": 1, "time": t, "passThroughEnv": PTE}),
        (f"{rest}/autoexec/job/status/update",
         {"jobId": job, "time": t, "status": "aborted", "passThroughEnv": PTE}),
        (f"{rest}/autoexec/job/env/update",
         {"jobId": job, "envName": "VER", "envValue": "1.2", "isHidden": 1, "time": t, "passThroughEnv": PTE}),
        (f"{rest}/autoexec/global/param/update/forautoexec",
         {"jobId": job, "key": "k", "defaultValue": "v", "time": t, "passThroughEnv": PTE}),
    ]
    assert all(r.tenant == "develop" for r in fake_console.callbacks())


def test_has_fail_node_answer_calls_back(tmp_path: Path, console_client: ConsoleClient,
                                         fake_console: FakeConsole) -> None:
    fake_console.responses["updateNodeStatus"] = lambda body: {"hasFailNode": 1 if body["status"] == "failed" else 0}
    fired = threading.Event()
    n = ConsoleNotifier.open(console_client, tmp_path, job_id="1", on_fail_node=fired.set,
                             base_delay=0.02, max_delay=0.1, poll_interval=0.05)
    try:
        n.node_status(group_no=0, phase="p", node=NodeRef(1, "h", ""), status="running",
                      fail_ignore=False, warn_count=0)
        assert n.flush(5) and not fired.is_set()
        n.node_status(group_no=0, phase="p", node=NodeRef(1, "h", ""), status="failed",
                      fail_ignore=False, warn_count=0)
        assert n.flush(5) and fired.wait(2)
    finally:
        n.close()


@pytest.mark.parametrize("phase, file_name", [("deploy", "nodes-ph-deploy.json"),
                                              ("ci/deploy", "nodes-ph-ci_deploy.json")])
def test_dead_lettered_phase_status_forces_nodes_redownload(tmp_path: Path, console_client: ConsoleClient,
                                                            fake_console: FakeConsole, phase: str,
                                                            file_name: str) -> None:
    fake_console.responses["updatePhaseStatus"] = lambda body: (200, {"Status": "ERROR", "Message": "no"})
    (tmp_path / "nodes.json").write_text("{}")
    phase_file = tmp_path / file_name
    assert phase_file == JobDir(tmp_path).phase_nodes(phase)  # where the nodes refresher downloads it
    phase_file.write_text("{}")
    n = ConsoleNotifier.open(console_client, tmp_path, job_id="1", base_delay=0.02, max_delay=0.1,
                             poll_interval=0.05)
    try:
        n.phase_status(group_no=0, phase=phase, status="running", counts=PhaseCounts())
        assert n.flush(5)
    finally:
        n.close()
    assert phase_file.stat().st_mtime == 0 and (tmp_path / "nodes.json").stat().st_mtime > 0
