"""A remote op's failure carries its kind beside the message: on the transport's result, and in
the ``node_end`` event; the node log line keeps its text."""
from __future__ import annotations

import json
import threading

import pytest

from autoexec.engine.run import ListSink
from autoexec.transports.base import Endpoint, FailureKind, RemoteOp, Timeouts
from autoexec.transports.ssh import SshTransport
from autoexec.transports.tagent import TagentTransport
from tests.fixtures_core import JobFiles, run_runtime, script_op

pytestmark = pytest.mark.integration

T = Timeouts(connect=30, read=60, write=30, op=60)


def _op(job: str, argv: list[str], root: str) -> RemoteOp:
    return RemoteOp(job_id=job, root=root, uploads=[], workdir="", argv=argv, env={"AUTOEXEC_JOBID": job})


def test_ssh_failure_kinds(sshd_pool) -> None:  # type: ignore[no-untyped-def]
    port = sshd_pool.ports[0]
    quiet = threading.Event()
    closed = SshTransport(Endpoint("127.0.0.1", 1, sshd_pool.user, sshd_pool.password), T)
    wrong = SshTransport(Endpoint("127.0.0.1", port, sshd_pool.user, "not-it"), T)
    good = SshTransport(Endpoint("127.0.0.1", port, sshd_pool.user, sshd_pool.password),
                        Timeouts(connect=30, read=60, write=30, op=1))
    try:
        result = closed.run(_op("3921", ["true"], "/tmp/autoexec-3921-a"), lambda _l: None, quiet)
        assert (result.kind, "connection refused" in (result.error or "")) == (FailureKind.CONNECT, True)
        result = wrong.run(_op("3921", ["true"], "/tmp/autoexec-3921-b"), lambda _l: None, quiet)
        assert result.kind == FailureKind.AUTH and "authentication failed" in (result.error or "")
        result = good.run(_op("3921", ["sleep", "30"], "/tmp/autoexec-3921-c"), lambda _l: None, quiet)
        assert result.kind == FailureKind.TIMEOUT and "op timeout" in (result.error or "")
        cancel = threading.Event()
        cancel.set()
        result = good.run(_op("3921", ["true"], "/tmp/autoexec-3921-d"), lambda _l: None, cancel)
        assert (result.kind, result.error) == (FailureKind.CANCELLED, "aborted")
    finally:
        for t in (closed, wrong, good):
            t.close()


def test_tagent_failure_kinds(tagent_agent) -> None:  # type: ignore[no-untyped-def]
    quiet = threading.Event()
    wrong = TagentTransport(Endpoint("127.0.0.1", tagent_agent.port, password="not-it"), T)
    result = wrong.run(_op("3922", ["true"], "$TMPDIR/autoexec-3922-a"), lambda _l: None, quiet)
    assert result.kind == FailureKind.AUTH, result
    closed = TagentTransport(Endpoint("127.0.0.1", 1, password="x"), T)
    result = closed.run(_op("3922", ["true"], "$TMPDIR/autoexec-3922-b"), lambda _l: None, quiet)
    assert result.kind == FailureKind.CONNECT, result


def test_node_end_event_names_the_kind_and_the_log_keeps_its_line(jobs: JobFiles, sshd_pool) -> None:  # type: ignore[no-untyped-def]
    port = sshd_pool.ports[0]
    op = script_op("check_1", "echo ran; exit 3\n", "target")
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "remote", "phaseType": "target",
                                                    "operations": [op]}]}]}
    nodes = [{"resourceId": rid, "runnerId": 1, "host": "127.0.0.1", "port": p, "protocol": "ssh", "protocolPort": p,
              "username": sshd_pool.user, "password": pw}
             for rid, p, pw in ((51, port, sshd_pool.password), (52, port, "not-it"), (53, 1, sshd_pool.password))]
    header = {"jobRunnerIds": [1], "localRunnerId": 1, "totalCount": 3}
    rt = jobs.runtime("3923", params, "\n".join(json.dumps(x) for x in [header, *nodes]) + "\n")
    sink = ListSink()
    outcome = run_runtime(rt, sink)
    rt.console.close()
    assert outcome.status == "failed"
    starts = {e["key"]: e["node"] for e in sink.events if e["event"] == "node_start"}
    kinds = {starts[e["key"]]: e.get("failure_kind") for e in sink.events if e["event"] == "node_end"}
    assert kinds == {f"127.0.0.1-{port}-51": "remote_exit", f"127.0.0.1-{port}-52": "auth", "127.0.0.1-1-53": "connect"}
    log = rt.jobdir.node_log("remote", f"127.0.0.1-{port}-52").read_text(encoding="utf-8")
    assert f"ERROR: ssh {sshd_pool.user}@127.0.0.1:{port}: authentication failed" in log
