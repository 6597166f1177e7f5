"""``autoexec report``: one self-contained HTML page per job, checked as text and as a headless
browser renders it."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from autoexec.cli.command import main
from tests.fixtures_core import EXAMPLES, JobFiles


def _failed_job(jobs: JobFiles) -> Path:
    """The bundled failing example, fired and then run again: two runs in its history."""
    params = json.loads((EXAMPLES / "fail" / "params.json").read_text())
    nodes = (EXAMPLES / "fail" / "nodes.jsonl").read_text()
    rt, outcome = jobs.run("4101", params, nodes, first_fire=True)
    assert outcome.status == "failed"
    rt, _ = jobs.run("4101")
    return rt.jobdir.root


def test_report_lists_failed_nodes_matrix_logs_and_every_run_without_external_resources(
        jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    root = _failed_job(jobs)
    assert main(["report", "--jobid", "4101"]) == 0
    path = root / "report.html"
    assert capsys.readouterr().out.strip() == str(path)
    page = path.read_text()
    problems = page[page.index("Failed and aborted nodes"):page.index("Nodes × phases")]
    assert re.findall(r"<td class=node>([^<]+)</td>", problems) == ["10.9.0.13-22-1003"]
    assert "/var is 97% full" in problems  # the tool's last line
    assert "class='cell succeed'" in page and "class='cell failed'" in page
    assert "<section id='log-check--10.9.0.13-22-1003' class='log open'>" in page  # failed: shown
    assert "<section id='log-check--10.9.0.11-22-1001' class='log'>" in page  # shown when its cell is clicked
    assert "<a href='#log-check--10.9.0.11-22-1001'>succeed</a>" in page
    assert "href='log/check/10.9.0.13-22-1003.txt'" in page  # the file itself, relative to the page
    runs = page[page.index("Runs of this job"):page.index("Console log (")]
    assert runs.count("<tr><td>") == 2 and runs.count(">failed</td>") == 2
    assert not re.search(r"<script|<link|<img|src=|@import|url\(|href=['\"]https?:", page)
    # the flag-style spelling writes the same report elsewhere with --output via the subcommand
    out = jobs.tmp / "elsewhere" / "r.html"
    assert main(["report", "--jobid", "4101", "--output", str(out)]) == 0
    assert "href='../home/data/job/410/1/log/check/10.9.0.13-22-1003.txt'" in out.read_text()
    path.unlink()
    assert main(["--report", "--jobid", "4101"]) == 0 and path.is_file()


def test_report_of_an_unknown_job_is_a_one_line_error(jobs: JobFiles, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--jobid", "777"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "777" in err


def test_headless_browser_renders_the_report_with_the_failed_nodes(jobs: JobFiles) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium to render the report (apt-get install -y chromium; .ci/run installs it)")
    _failed_job(jobs)
    assert main(["report", "--jobid", "4101"]) == 0
    page = jobs.home / "data/job/410/1/report.html"
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--user-data-dir={jobs.tmp / 'chromium'}", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    rows = re.findall(r'<tr class="problem (\w+)"><td>(\w+)</td><td class="node">([^<]+)</td>', dom)
    assert rows == [("failed", "check", "10.9.0.13-22-1003")], dom[:3000]
