"""The Prefect UI of the embedded server, loaded in a real (headless) browser: it reaches its API,
shows a job's run, and offers Cancel/Suspend for a CLI-started run."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autoexec.conf.prefect_server import ui_url
from tests.fixtures_core import cli_env, nodes_lines, script_op
from tests.prefect_record import API_POLL, api_url, call, final_run, flow_runs
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _dom(url: str) -> str:
    """The page after its scripts ran (virtual time: the browser does not wait in real time)."""
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                              "--disable-background-networking", "--disable-component-update", "--disable-sync",
                              "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=20000",
                              "--dump-dom", url], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: `apt-get install -y chromium` (.ci/run does)")
def test_the_ui_shows_the_run_and_offers_cancel_for_a_cli_run(prefect_home: Path, tmp_path: Path) -> None:
    job = "7801"
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner_target",
                                  "operations": [script_op("s_1", "sleep 120", "runner_target")]}]}]}))
    nodes = tmp_path / "nodes.jsonl"
    nodes.write_text(nodes_lines(1))
    proc = subprocess.Popen([sys.executable, "-m", "autoexec.cli.command", "-d", "-j", job, "-p", str(params), "-n", str(nodes)],
                            env=cli_env(prefect_home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run = wait_until(lambda: [r for r in flow_runs(prefect_home, f"job-{job}") if r["state_type"] == "RUNNING"], 60,
                         interval=API_POLL)[0]
        ui = ui_url(api_url(prefect_home))
        page = _dom(f"{ui}/runs/flow-run/{run['id']}")
        assert "Can't connect to Server API" not in page
        assert f"job-{job}" in page
        assert "> Cancel <" in page and "> Suspend " in page, "the classic UI offers Cancel and Suspend"
        resp = call("POST", f"{api_url(prefect_home)}/flow_runs/{run['id']}/set_state",
                    {"state": {"type": "CANCELLING", "name": "Cancelling"}})  # what the Cancel button sends
        assert resp.json()["status"] == "ACCEPT"
        assert proc.wait(30) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    assert final_run(prefect_home, f"job-{job}")["state_type"] == "CANCELLED"
    page = _dom(f"{ui}/v2/runs/flow-run/{run['id']}")  # the new UI, on the finished run
    assert f"job-{job}" in page and "Can't connect" not in page
