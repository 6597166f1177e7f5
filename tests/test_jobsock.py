"""The job socket: tools setting job variables, and the cross-runner grayScale barrier."""
from __future__ import annotations

import json
import socket
import threading
import time

from tests.fixtures_core import JobFiles, nodes_lines, run_runtime, script_op

SEND = ('import json, os, socket\n'
        's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n'
        's.sendto(json.dumps({"action": "setEnv", "items": {"FROM_TOOL": "42"}}).encode(), os.environ["AUTOEXEC_JOB_SOCK"])\n')


def test_tool_sets_a_job_variable_seen_by_later_phases(jobs: JobFiles) -> None:
    params = {"runFlow": [
        {"groupNo": 0, "phases": [{"phaseName": "a", "phaseType": "runner",
                                   "operations": [script_op("send_1", SEND, interpreter="python")]}]},
        {"groupNo": 1, "phases": [{"phaseName": "b", "phaseType": "runner",
                                   "operations": [script_op("show_1", 'echo "value=$FROM_TOOL"\n')]}]}]}
    rt, outcome = jobs.run("401", params)
    assert outcome.status == "succeed"
    assert "value=42" in rt.jobdir.node_log("b", "local-0-0").read_text()
    assert not list(rt.jobdir.root.glob("job*.sock")), "the socket is removed at the end"


def test_multi_runner_gray_scale_waits_for_the_console_go_ahead(jobs: JobFiles) -> None:
    header_nodes = nodes_lines(4).splitlines()
    header = json.loads(header_nodes[0])
    header["jobRunnerIds"] = [1, 2]
    nodes = "\n".join([json.dumps(header), *header_nodes[1:]]) + "\n"
    trace = jobs.tmp / "trace"
    params = {"runFlow": [{"groupNo": 0, "execStrategy": "grayScale", "roundCount": 2, "phases": [
        {"phaseName": "p", "phaseType": "runner_target",
         "operations": [script_op("rec_1", f'echo "$NODE_NAME $(date +%s.%N)" >> {trace}\n', "runner_target")]}]}]}
    rt = jobs.runtime("402", params, nodes, dev_mode=False)
    released: list[float] = []

    def console() -> None:
        """Plays the console: lets each round go on 0.3 s after the runner reported it ended."""
        done = 0
        deadline = time.monotonic() + 20
        while done < 2 and time.monotonic() < deadline:
            ended = [c for c in rt.notifier.calls if c[0] == "round_ended"]
            if len(ended) > done:
                time.sleep(0.3)
                released.append(time.time())
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                    s.sendto(json.dumps({"action": "informRoundContinue", "phaseName": "p",
                                         "roundNo": ended[done][1]["round_no"]}).encode(),
                             rt.env["AUTOEXEC_JOB_SOCK"])
                done += 1
            time.sleep(0.02)

    threading.Thread(target=console, daemon=True).start()
    outcome = run_runtime(rt)
    assert outcome.status == "succeed"
    starts = {line.split()[0]: float(line.split()[1]) for line in trace.read_text().splitlines()}
    assert max(starts["n1"], starts["n2"]) < released[0] < min(starts["n3"], starts["n4"])


def test_round_end_is_told_again_until_the_go_ahead(jobs: JobFiles, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import autoexec.groups as groups

    monkeypatch.setattr(groups, "ROUND_RESEND_SECS", 0.2)
    lines = nodes_lines(2).splitlines()
    header = dict(json.loads(lines[0]), jobRunnerIds=[1, 2])
    params = {"runFlow": [{"groupNo": 0, "execStrategy": "grayScale", "roundCount": 1, "phases": [
        {"phaseName": "p", "phaseType": "runner_target", "operations": [script_op("e_1", "true\n", "runner_target")]}]}]}
    rt = jobs.runtime("403", params, "\n".join([json.dumps(header), *lines[1:]]) + "\n", dev_mode=False)

    def release_late() -> None:
        deadline = time.monotonic() + 10
        while not [c for c in rt.notifier.calls if c[0] == "round_ended"] and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.7)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(json.dumps({"action": "informRoundContinue", "phaseName": "p", "roundNo": 1}).encode(),
                     rt.env["AUTOEXEC_JOB_SOCK"])

    threading.Thread(target=release_late, daemon=True).start()
    outcome = run_runtime(rt)
    assert outcome.status == "succeed"
    told = [c for c in rt.notifier.calls if c[0] == "round_ended"]
    assert 3 <= len(told) <= 6 and all(c[1]["round_no"] == 1 for c in told)


WAIT_TOOL = ('import json, os, socket, time\n'
             's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n'
             'def send(**kw):\n'
             '    s.sendto(json.dumps(dict(action="informNodeWaitInput", phaseName="ask", resourceId=101, **kw)).encode(),\n'
             '             os.environ["AUTOEXEC_JOB_SOCK"])\n'
             'send(interact={"title": "go on?", "opType": "button", "options": ["yes", "no"]})\n'
             'time.sleep(0.5)\n'
             'print(open(os.environ["JOB_PATH"] + "/status/ask/10.1.0.1-22-101.json").read(), flush=True)\n'
             'send(clean=1)\n'
             'time.sleep(0.3)\n')


def test_tool_waiting_for_input_sets_wait_input_and_back(jobs: JobFiles) -> None:
    params = {"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "ask", "phaseType": "runner_target", "operations": [
        script_op("ask_1", WAIT_TOOL, "runner_target", interpreter="python")]}]}]}
    rt, outcome = jobs.run("404", params, nodes_lines(1))
    log = rt.jobdir.node_log("ask", "10.1.0.1-22-101").read_text()
    assert outcome.status == "succeed", log
    assert '"status": "waitInput"' in log and '"title": "go on?"' in log
    statuses = [(c[0], c[1]["status"]) for c in rt.notifier.calls if c[0] in ("node_status", "phase_status")]
    assert statuses == [("phase_status", "running"), ("node_status", "running"), ("node_status", "waitInput"),
                        ("phase_status", "waitInput"), ("node_status", "running"), ("phase_status", "running"),
                        ("node_status", "succeed"), ("phase_status", "succeed")]
