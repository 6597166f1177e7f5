"""Fixtures for the core engine: a private AUTOEXEC_HOME per test, jobs written on the fly, and
one embedded Prefect server per test session for the end-to-end CLI tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from autoexec.engine.jobloop import JobOutcome
from autoexec.load.loader import JobRequest, build_runtime
from autoexec.engine.run import EventSink, ListSink, run_engine
from autoexec.job.runtime import JobRuntime

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def process_running(pid: int) -> bool:
    """Alive and not a zombie: a killed child not yet reaped still answers ``kill(pid, 0)``."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def script_op(op_id: str, script: str, op_type: str = "runner", interpreter: str = "bash",
              **extra: Any) -> dict[str, Any]:
    op = {"opId": op_id, "opName": op_id.rsplit("_", 1)[0], "opType": op_type, "isScript": 1,
          "interpreter": interpreter, "scriptContent": script, "opt": {}, "desc": {}}
    op.update(extra)
    return op


def nodes_lines(count: int, runner_id: int = 1, **extra: Any) -> str:
    header = {"jobRunnerIds": [runner_id], "localRunnerId": runner_id, "totalCount": count}
    lines = [json.dumps(header)]
    for i in range(1, count + 1):
        node = {"resourceId": 100 + i, "runnerId": runner_id, "host": f"10.1.0.{i}", "port": 22,
                "nodeName": f"n{i}", "protocol": "ssh", "protocolPort": 22, "username": "u", "password": "pw"}
        node.update(extra)
        lines.append(json.dumps(node))
    return "\n".join(lines) + "\n"


@dataclass
class JobFiles:
    home: Path
    tmp: Path

    def write(self, params: dict[str, Any], nodes: str | None = None, name: str = "job") -> tuple[Path, Path | None]:
        params_path = self.tmp / f"{name}-params.json"
        params_path.write_text(json.dumps(params), encoding="utf-8")
        nodes_path = None
        if nodes is not None:
            nodes_path = self.tmp / f"{name}-nodes.jsonl"
            nodes_path.write_text(nodes, encoding="utf-8")
        return params_path, nodes_path

    def runtime(self, job_id: str, params: dict[str, Any] | None = None, nodes_text: str | None = None,
                **req: Any) -> JobRuntime:
        params_path, nodes_path = self.write(params, nodes_text, name=job_id) if params is not None else (None, None)
        req.setdefault("dev_mode", True)
        request = JobRequest(job_id=job_id, params_file=str(params_path or ""), nodes_file=str(nodes_path or ""),
                             **req)
        return build_runtime(request)

    def run(self, job_id: str, params: dict[str, Any] | None = None, nodes_text: str | None = None,
            **req: Any) -> tuple[JobRuntime, JobOutcome]:
        """Runs a job through the engine as it ships (the CLI's and a deployment run's path)."""
        rt = self.runtime(job_id, params, nodes_text, **req)
        outcome = run_runtime(rt)
        rt.console.close()
        return rt, outcome


def run_runtime(rt: JobRuntime, sink: EventSink | None = None) -> JobOutcome:
    """Runs a built runtime through the engine as it ships; its events go to ``sink``."""
    return run_engine(rt, sink if sink is not None else ListSink())


@pytest.fixture
def ae_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("AUTOEXEC_HOME", str(home))
    # jobs run here write their event spool, but start no recorder (and so no Prefect server) per test
    monkeypatch.setenv("AUTOEXEC_PREFECT_RECORD", "0")
    return home


@pytest.fixture
def jobs(ae_home: Path, tmp_path: Path) -> JobFiles:
    return JobFiles(ae_home, tmp_path)


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An AUTOEXEC_HOME whose embedded Prefect server is started once for the whole session."""
    home = tmp_path_factory.mktemp("prefect-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["AUTOEXEC_HOME"] = str(home)
    env["AUTOEXEC_PREFECT_START_SECS"] = "600"  # a loaded 2-core machine: no short start-up limit
    proc = subprocess.run([sys.executable, "-m", "autoexec.cli.server", "start"], env=env, capture_output=True,
                          text=True, timeout=700)
    if proc.returncode != 0:
        subprocess.run([sys.executable, "-m", "autoexec.cli.server", "stop"], env=env, capture_output=True, timeout=60)
        log = home / "logs" / "prefect-server.log"
        pytest.fail(f"the embedded Prefect server did not start: {proc.stdout}{proc.stderr}\n--- {log}:\n"
                    f"{log.read_text()[-6000:] if log.exists() else '(no log)'}")
    yield home
    subprocess.run([sys.executable, "-m", "autoexec.cli.server", "stop"], env=env, capture_output=True, timeout=60)


def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["AUTOEXEC_HOME"] = str(home)
    return env
