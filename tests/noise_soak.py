"""Many SSH nodes whose login shells are noisy, while the machine is busy: the check behind the
stress test and ``bench/ssh_noise_soak.py``.

One job = one target phase, one bash script op per node (run as a login shell, so profile and
``.bash_logout`` print on both streams), which writes a text output and a ``filepath`` output and
reports the file's sha256. Every node must succeed with exactly those outputs: a node that fails,
or whose fetched file differs by one byte from what the host hashed, is a failure.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator

from tests.fixtures_core import script_op
from tests.sshd_pool import Account

TOOL = """echo "node $NODE_NAME starts"
echo "a warning on stderr" >&2
head -c 4096 /dev/urandom > blob.bin
sum=$(sha256sum blob.bin | cut -d' ' -f1)
printf '{"name": "%s", "blob": "blob.bin", "sum": "%s"}' "$NODE_NAME" "$sum" > output.json
echo "node $NODE_NAME done"
exit 0
"""


def soak_params() -> dict:
    op = script_op("soak_1", TOOL, "target",
                   output={"name": {"type": "text"}, "blob": {"type": "filepath"}, "sum": {"type": "text"}})
    return {"roundCount": 0,
            "runFlow": [{"groupNo": 0, "phases": [{"phaseName": "soak", "phaseType": "target", "operations": [op]}]}]}


def soak_nodes(ports: list[int], account: Account, count: int) -> list[dict]:
    return [{"resourceId": 1000 + i, "runnerId": 1, "host": "127.0.0.1", "port": ports[i % len(ports)],
             "nodeName": f"soak{i}", "protocol": "ssh", "protocolPort": ports[i % len(ports)],
             "username": account.name, "password": account.password} for i in range(count)]


def nodes_text(nodes: list[dict]) -> str:
    header = {"jobRunnerIds": [1], "localRunnerId": 1, "totalCount": len(nodes)}
    return "\n".join(json.dumps(x) for x in [header, *nodes]) + "\n"


def failures(jobdir, nodes: list[dict]) -> list[str]:  # type: ignore[no-untyped-def]
    """One line per node that did not come back exactly right."""
    found = []
    for node in nodes:
        triple = f"127.0.0.1-{node['port']}-{node['resourceId']}"
        try:
            status = json.loads(jobdir.node_status("soak", triple).read_text())["status"]
            if status != "succeed":
                log = jobdir.node_log("soak", triple).read_text().splitlines()
                errors = [line for line in log if "ERROR" in line] or log[-3:]
                found.append(f"{node['nodeName']}: {status}: {' | '.join(errors)}")
                continue
            out = json.loads(jobdir.node_output(triple).read_text())["soak_1"]
            blob = (jobdir.root / out["blob"]).read_bytes()
            if out["name"] != node["nodeName"] or hashlib.sha256(blob).hexdigest() != out["sum"]:
                found.append(f"{node['nodeName']}: outputs differ from what the host wrote: {out}")
        except (OSError, KeyError, TypeError, ValueError) as err:
            found.append(f"{node['nodeName']}: cannot read its results: {err}")
    return found


@contextmanager
def cpu_hog(processes: int | None = None) -> Iterator[None]:
    """Busy loops on every core for the duration (stopped by their handles)."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes or os.cpu_count() or 2)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()
