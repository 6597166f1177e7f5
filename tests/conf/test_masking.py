"""Known secrets never leave the runner unmasked: node and console logs (what tools print too),
Prefect-forwarded log text, MongoDB documents, node messages; job files are the owner's only."""
from __future__ import annotations

import json
import os
import random
import stat
from pathlib import Path

import mongomock

from autoexec.conf.masking import MASK, Masker
from autoexec.jobdir.mongo import MongoStore
from autoexec.conf.secrets import encrypt_secret
from tests.fixtures_core import JobFiles, script_op

KEY = "job-key-123"
NODE_PW = "n0de-Pa55word"
OPT_PW = "opt-s3cret-value"
ENV_PW = "env-s3cret-value"
BLOCKED = (NODE_PW, OPT_PW, ENV_PW, KEY)


def test_masker_longest_first_short_ignored_and_multiline() -> None:
    masker = Masker(["abc", "abcdef", "xy", "", None, 5, "line-one\nline-two"])
    assert masker("1abcdefg abc xy") == f"1{MASK}g {MASK} xy"  # the longer secret wins; 2 chars are not masked
    assert masker("got line-two") == f"got {MASK}"
    assert masker.value({"k": ["abc", {"abc": 1}], "n": 3}) == {"k": [MASK, {MASK: 1}], "n": 3}
    assert "abc" not in repr(masker)
    assert not masker.add(["abc"]) and masker.add(["zzz"])
    assert masker("zzz") == MASK and Masker()("abc") == "abc"


def test_masker_with_many_secrets_masks_each() -> None:
    secrets = [f"pw-{i:04d}-{i * 7919 % 10007}" for i in range(2000)]
    masker = Masker(secrets)
    line = f"a {secrets[1234]} b {secrets[7]}{secrets[1999]} c"
    assert masker(line) == f"a {MASK} b {MASK}{MASK} c"


def test_masker_fed_one_secret_at_a_time_masks_as_one_batch_would() -> None:
    """Secrets arrive one by one (a credential per node): every one is masked, the longest wins
    where several start at the same place, exactly as a masker given them all at once does."""
    rng = random.Random(7)
    secrets = ["abcdef", "abc", "bcdefgh", "cdx", "zzzz", "zzzzzz", "defg"]
    secrets += ["".join(rng.choice("abcdz") for _ in range(rng.randint(3, 9))) for _ in range(300)]
    incremental = Masker()
    for secret in secrets:
        incremental.add([secret])
        assert incremental(f"<{secret}>") == f"<{MASK}>"
    batch = Masker(secrets)
    for secret in secrets:
        assert incremental(f"x {secret} y") == f"x {MASK} y"
    assert incremental("1abcdefgh2") == batch("1abcdefgh2") == f"1{MASK}gh2"  # abcdef starts before bcdefgh: leftmost wins
    assert incremental("zzzzzzz") == f"{MASK}z"
    for _ in range(300):
        text = "".join(rng.choice("abcdz -") for _ in range(rng.randint(0, 60)))
        assert incremental(text) == batch(text), text
    assert len(incremental) == len(batch)


def _secret_job(jobs: JobFiles) -> tuple[dict, str]:
    conf = jobs.home / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "config.ini").write_text(f"[server]\npassword.key = {KEY}\n")
    script = ('echo "argv: $*"\necho "node password: $AUTOEXEC_NODE_PASSWORD"\necho "env: $JOB_SECRET"\n'
              'echo "node json: $AUTOEXEC_NODE"\n'
              'echo "no newline: $AUTOEXEC_NODE_PASSWORD" >&2\nprintf "%s" "$JOB_SECRET"\n')
    op = script_op("leak_1", script, op_type="runner_target",
                   opt={"pw": encrypt_secret(OPT_PW, KEY, "{RC4}"), "note": f"uses {NODE_PW}"},
                   desc={"pw": "password", "note": "text"})
    params = {"opt": {"JOB_SECRET": encrypt_secret(ENV_PW, KEY, "{RC4}")},
              "runFlow": [{"groupNo": 0, "phases": [{"phaseName": "p", "phaseType": "runner_target",
                                                      "operations": [op]}]}]}
    header = {"totalCount": 1, "localRunnerId": 1, "jobRunnerIds": [1]}
    node = {"resourceId": 7, "runnerId": 1, "host": "10.9.9.9", "port": 22, "protocol": "ssh",
            "username": "u", "password": encrypt_secret(NODE_PW, KEY, "{ENCRYPTED}")}
    return params, json.dumps(header) + "\n" + json.dumps(node) + "\n"


def _all_files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_what_a_tool_prints_is_masked_in_every_job_file(jobs: JobFiles) -> None:
    params, nodes = _secret_job(jobs)
    rt, outcome = jobs.run("77", params, nodes)
    assert outcome.exit_code == 0
    log = rt.jobdir.node_log("p", "10.9.9.9-22-7").read_text()
    assert f'"password": "{MASK}"' in log  # AUTOEXEC_NODE carries it for tools, as the original's did
    assert f"node password: {MASK}" in log and f"env: {MASK}" in log and f"no newline: {MASK}" in log
    assert f"--pw {MASK}" in log  # argv as the tool received it, echoed back
    recorded = json.loads(rt.jobdir.node_input("10.9.9.9-22-7").read_text())["leak_1"]["options"]
    assert recorded == {"pw": MASK, "note": f"uses {MASK}"}
    for path, data in _all_files(rt.jobdir.root).items():
        if path.name in ("params.json", "nodes.json"):
            continue  # the inputs themselves (0600, encrypted values as the console sent them)
        for secret in BLOCKED:
            assert secret.encode() not in data, (path, secret)


def test_job_files_are_owner_only_whatever_the_umask(jobs: JobFiles) -> None:
    params, nodes = _secret_job(jobs)
    old = os.umask(0)
    try:
        root = jobs.home / "data" / "job" / "78"
        root.mkdir(parents=True)
        root.chmod(0o755)  # an existing, wider job dir is narrowed
        rt, _ = jobs.run("78", params, nodes)
    finally:
        os.umask(old)
    assert stat.S_IMODE(rt.jobdir.root.stat().st_mode) == 0o700
    for path in rt.jobdir.root.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_file() and path.parent.name != "script":
            assert mode & 0o077 == 0, (path, oct(mode))
    for name in ("params.json", "nodes.json"):
        assert stat.S_IMODE((rt.jobdir.root / name).stat().st_mode) == 0o600


def test_node_message_and_mongo_documents_are_masked(jobs: JobFiles) -> None:
    masker = Masker([NODE_PW])
    store = MongoStore(mongomock.MongoClient(), "autoexec")
    store.mask = masker
    store.save_node_output("1", {"resourceId": 7, "host": "h", "port": 22},
                           {"op_1": {"said": f"pw={NODE_PW}"}, "nodeEnv": {NODE_PW: "k"}})
    store.save_env("1", "X", NODE_PW, hidden=True)
    assert store.flush(10)
    doc = json.dumps(list(store._db["_node_output"].find({}, {"_id": 0})), default=str)
    env = json.dumps(list(store._db["_autoexec_env"].find({}, {"_id": 0})), default=str)
    store.close()
    assert NODE_PW not in doc and MASK in doc and NODE_PW not in env


def test_prefect_forwarded_log_text_is_masked(tmp_path: Path) -> None:
    """The record's copy of a node log goes through the job's masker (a deployment run has it),
    sent to a real HTTP server standing in for the Prefect API."""
    import http.server
    import threading

    from autoexec.events.stream import make
    from autoexec.flows.api import PrefectApi
    from autoexec.flows.record import Catalog, RunRecord

    sent: list[str] = []

    class Api(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
            sent.append(body)
            data = b'{"id": "00000000-0000-0000-0000-000000000001", "state_type": "RUNNING"}'
            self.send_response(201)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        log = tmp_path / "n.txt"
        mirror = RunRecord(PrefectApi(f"http://127.0.0.1:{server.server_port}/api"), Catalog("f", "g", None),
                           flow_run_id="r", mask=Masker([OPT_PW]))
        mirror.apply(make("job_start", job_id="1", pid=1))
        mirror.apply(make("node_start", key=1, group=0, phase="p", node="n", label="n", log=str(log)))
        log.write_text(f"12:00:00 tool said {OPT_PW}\n")  # e.g. appended by a writer without the masker
        mirror.apply(make("node_end", key=1, status="failed", message=f"said {OPT_PW}", exit_code=1))
        mirror.flush_logs()
    finally:
        server.shutdown()
        server.server_close()
    text = "\n".join(sent)
    assert "tool said" in text and OPT_PW not in text and MASK in text


def test_the_job_mongodb_mirror_writes_masked_documents(jobs: JobFiles, monkeypatch: object) -> None:
    import autoexec.load.loader as loader

    store = MongoStore(mongomock.MongoClient(), "autoexec")
    monkeypatch.setattr(loader, "_open_mirror", lambda cfg, console: store)  # type: ignore[attr-defined]
    params, nodes = _secret_job(jobs)
    rt, outcome = jobs.run("79", params, nodes)
    assert outcome.exit_code == 0 and store.mask is rt.masker
    rt.mirror.save_env("79", "X", f"got {NODE_PW}")  # type: ignore[union-attr]
    assert store.flush(10)
    docs = json.dumps(list(store._db["_autoexec_env"].find({}, {"_id": 0})), default=str)
    store.close()
    assert NODE_PW not in docs and MASK in docs
