"""Production mode: inputs come from the neatlogic console and every state change goes back to it.
devmode and production share everything below the job loader; this module only adds the console:
downloads before the job starts, fetchers the op path calls on demand, and the outbox-backed
notifier.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, TypeVar

from autoexec.conf.block_names import CONSOLE_BLOCK_ENV
from autoexec.conf.config import Config, load_config
from autoexec.console.client import ConsoleClient
from autoexec.console.errors import ConsoleError
from autoexec.console.notifier import ConsoleNotifier
from autoexec.console.scripts import ScriptStore
from autoexec.job.control import JobControl
from autoexec.job.files import FileParams
from autoexec.jobdir.layout import JobDir, UnsafeName
from autoexec.jobdir.lock import JobLock
from autoexec.job.spec import JobSpec
from autoexec.load.loader import (Connect, JobRequest, brings_own_nodes, build_runtime, console_gives_nodes,
                                   console_gives_params, job_dir_of, resolve_input)
from autoexec.jobdir.logs import ConsoleLog
from autoexec.models.nodes import Node
from autoexec.models.params import JobInputError, Operation, Params
from autoexec.events.notify import Notifier, NullNotifier
from autoexec.job.runtime import JobRuntime
from autoexec.job.services import ConsoleServices, NoConsole
from autoexec.conf.settings import load_settings

T = TypeVar("T")


def build_job_runtime(req: JobRequest, cfg: Config | None = None, control: JobControl | None = None,
                      job_lock: JobLock | None = None) -> JobRuntime:
    """The one entry for the CLI and deployment runs: devmode builds from local inputs only,
    production downloads inputs from the console and reports back through its outbox.
    ``control`` is the job's, when signals were already being taken before loading."""
    cfg = cfg or load_config()
    if req.dev_mode:
        connect = _devmode_downloads(cfg, req) if console_configured(cfg) else None
        return build_runtime(req, cfg, control=control, connect=connect, job_lock=job_lock)
    tenant = str(req.pass_through_env.get("tenant") or os.environ.get("tenant") or os.environ.get("TENANT")
                 or cfg.tenant or "none")
    client = console_client(cfg, tenant)
    try:
        _download_inputs(client, req, cfg)
        rt = build_runtime(req, cfg, control=control,
                           complete_config=lambda params, c: _complete_config(client, params, c),
                           deploy_lookup=_DeployLookup(client), connect=_console_connector(client, req),
                           job_lock=job_lock)
    except ConsoleError as exc:
        client.close()
        raise JobInputError(f"console {client.base_url}: {exc}") from None
    except JobInputError:
        client.close()
        raise
    rt.masker.add([client.token])  # also when it came from a Prefect block, not config.ini
    return rt


# --- the console itself -----------------------------------------------------------------------
def console_configured(cfg: Config) -> bool:
    """Whether any console is named (devmode then still downloads custom scripts and files from it)."""
    return bool(cfg.server_baseurl or load_settings().console_block)


def console_client(cfg: Config, tenant: str = "none") -> ConsoleClient:
    """config.ini (or its ``AUTOEXEC_SERVER_*`` overrides) first, else a Prefect block, else a one-line
    explanation of what is missing."""
    if cfg.server_baseurl:
        missing = [key for key, value in (("server.username", cfg.server_username),
                                          ("server.password", cfg.server_password)) if not value]
        if missing:
            raise JobInputError(f"{cfg.path}: {' and '.join(missing)} not set: production mode signs every "
                                f"console call with them (or run with --devmode)")
        return ConsoleClient.from_config(cfg, tenant=tenant, verify_tls=cfg.server_verify_tls,
                                         connect_timeout=load_settings().console_connect_timeout,
                                         read_timeout=load_settings().console_read_timeout)
    block_name = load_settings().console_block
    if block_name:
        from autoexec.blocks.lookup import BlockUnavailable, console_credentials

        try:
            block = console_credentials(block_name)
        except BlockUnavailable as exc:
            raise JobInputError(f"{CONSOLE_BLOCK_ENV}: {exc}") from None
        args = block.to_client_args()
        args["tenant"] = tenant if tenant != "none" else args["tenant"]
        return ConsoleClient(**args)
    raise JobInputError(f"{cfg.path}: server.baseurl is not set: production mode needs the neatlogic console "
                        f"(server.baseurl/username/password, AUTOEXEC_SERVER_* variables or a Prefect block named "
                        f"in {CONSOLE_BLOCK_ENV}); run with --devmode to use local files only")


def with_retries(what: str, fn: Callable[[], T]) -> T:
    """Downloads happen before anything runs: a console that restarts gets a few seconds, then the
    job stops with a one-line error and nothing recorded (the previous copy of the file survives)."""
    from autoexec.conf.retry import Backoff, retry

    attempts = max(1, load_settings().console_retries)
    return retry(fn, attempts=attempts, backoff=Backoff(first=0.5, cap=8.0), retry_on=(ConsoleError,),
                 should_retry=lambda exc: isinstance(exc, ConsoleError) and exc.retryable)


# --- inputs ------------------------------------------------------------------------------------------
def _download_inputs(client: ConsoleClient, req: JobRequest, cfg: Config) -> None:
    """As the original: params when first fired or missing, job-level nodes likewise unless the job brings its
    own (``runNode``, ``--nodesfile``, inline nodes)."""
    jobdir = job_dir_of(req, cfg)
    if console_gives_params(req, jobdir):
        with_retries("getParams", lambda: client.get_params(req.job_id, jobdir.params))
    params = _peek_params(req, jobdir)
    if console_gives_nodes(req, jobdir, params.get("runNode")):
        job_id = _effective_job_id(req, params)
        with_retries("getNodes", lambda: client.get_nodes(
            job_id, jobdir.nodes, "job", runner_id=_runner_id(req, params),
            pass_through_env=_pass_through(req, params)))


def _peek_params(req: JobRequest, jobdir: JobDir) -> dict[str, Any]:
    """Just enough of params.json to decide about nodes; full validation is the loader's job."""
    if req.params is not None:
        return req.params
    path = resolve_input(req.params_file, jobdir) if req.params_file else jobdir.params
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _effective_job_id(req: JobRequest, params: dict[str, Any]) -> str:
    return req.job_id if req.job_id not in ("", "0") else str(params.get("jobId", "0"))


def _pass_through(req: JobRequest, params: dict[str, Any]) -> dict[str, Any]:
    given = params.get("passThroughEnv")
    base = given if isinstance(given, dict) else {}
    return {**base, **req.pass_through_env}


def _runner_id(req: JobRequest, params: dict[str, Any]) -> int:
    value = _pass_through(req, params).get("runnerId") or os.environ.get("RUNNER_ID") or 1
    try:
        return int(value)
    except (TypeError, ValueError):
        raise JobInputError(f"runnerId {value!r} is not an integer") from None


def _complete_config(client: ConsoleClient, params: Params, cfg: Config) -> Config:
    """Once params are known: their tenant wins over passthrough/env, and a runner without a local
    MongoDB asks the console for one. A console that cannot say is not fatal: local files
    are authoritative."""
    if params.tenant:
        client.tenant = params.tenant
    if cfg.db_url:
        return cfg
    try:
        conf = with_retries("getMongoDBConf", client.get_mongodb_conf)
    except (ConsoleError, ValueError):  # ValueError: no usable datasource in the answer
        return cfg
    return replace(cfg, db_url=conf.url, db_name=conf.database or cfg.db_name,
                   db_username=conf.username or "", db_password=conf.passwordPlain or "")


class _DeployLookup:
    """Deploy ids and runner group of a release job, from the console."""

    def __init__(self, client: ConsoleClient) -> None:
        self.client = client

    def ids(self, sys_name: str, module_name: str, env_name: str | None) -> dict[str, Any]:
        found = with_retries("getDeployIdPath", lambda: self.client.get_deploy_id_path(sys_name, module_name, env_name))
        return found if isinstance(found, dict) else {}

    def runner_group(self, sys_id: str, module_id: str, env_id: str | None) -> Any:
        return with_retries("getDeployRunnerGroup",
                            lambda: self.client.get_deploy_runner_group(sys_id, module_id, env_id))


# --- what the op path asks the console for, on demand ---------------------------------------------
class _Downloads:
    """Custom scripts by ``scriptId`` (with their libraries) and file parameters, from the console."""

    def __init__(self, spec: JobSpec, client: ConsoleClient) -> None:
        self.spec = spec
        self.scripts = ScriptStore(client, spec.job_id)
        self.client = client
        self.libs: dict[str, list[Path]] = {}

    def fetch_script(self, op: Operation) -> Path:
        from autoexec.ops.tools import script_file_name

        if op.scriptId in (None, ""):
            raise JobInputError(f"operation {op.opId}: custom script without scriptId or scriptContent")
        try:
            got = with_retries("fetchScript", lambda: self.scripts.get(
                str(op.scriptId), op.opId, self.spec.jobdir.script_dir(op.bundle), script_file_name(op)))
        except ConsoleError as exc:
            raise OSError(f"fetch script {op.scriptId} of {op.opId} failed: {exc}") from None
        self.libs[op.opId] = got.libs
        return got.path

    def fetch_file(self, file_id: int, cache_dir: Path) -> tuple[Path, str]:
        got = with_retries("fetchFile", lambda: self.client.fetch_file(file_id, cache_dir))
        return Path(got.path), got.name


class ConsoleJobServices(NoConsole):
    """Production mode: everything the op path needs comes from the console."""

    def __init__(self, spec: JobSpec, client: ConsoleClient, console: ConsoleLog, pass_through: dict[str, Any],
                 refresh: bool) -> None:
        self.downloads = _Downloads(spec, client)
        super().__init__(FileParams(spec.config.data_dir, spec.jobdir.file_dir, fetch=self.downloads.fetch_file),
                         spec.config.path)
        self.spec, self.client, self.console = spec, client, console
        self.pass_through = pass_through
        self.refresh = refresh
        """False when the job brings its own nodes (``runNode``, a nodes file, inline nodes)."""

    def fetch_script(self, op: Operation) -> Path:
        return self.downloads.fetch_script(op)

    def script_libs(self, op: Operation) -> list[Path]:
        return self.downloads.libs.get(op.opId, [])

    def account_password(self, node: Node, username: str, account_id: str, protocol: str) -> str | None:
        answer = with_retries("getAccount", lambda: self.client.get_account(
            self.spec.job_id, node.resourceId, node.host, node.protocolPort, username, account_id, protocol))
        password = answer.get("password") if isinstance(answer, dict) else answer
        return str(password or "")

    def refresh_nodes(self, node_from: str, phase: str, group_no: int) -> None:
        if not self.refresh:
            return
        spec = self.spec
        dest = spec.jobdir.phase_nodes(phase) if node_from == "phase" else spec.jobdir.group_nodes(group_no)
        try:
            with_retries("getNodes", lambda: self.client.get_nodes(
                spec.job_id, dest, node_from, phase=phase, group_no=group_no if node_from == "group" else None,
                runner_id=spec.runner_id, pass_through_env=self.pass_through))
        except ConsoleError as exc:
            if not dest.exists():
                raise
            self.console.line(f"WARN: nodes of {node_from} {phase or group_no} not refreshed ({exc}); "
                              f"using the copy from {time.ctime(dest.stat().st_mtime)}.")

    def global_lock(self, params: dict[str, Any]) -> Any:
        return with_retries("globalLock", lambda: self.client.global_lock(params))

    def close(self) -> None:
        self.client.close()


def _console_connector(client: ConsoleClient, req: JobRequest) -> Connect:
    def connect(spec: JobSpec, control: JobControl, console: ConsoleLog) -> tuple[Notifier, ConsoleServices]:
        pass_through = {**spec.params.passThroughEnv, **req.pass_through_env}
        notifier = ConsoleNotifier.open(client, spec.jobdir.root, job_id=spec.job_id, runner_id=spec.runner_id,
                                        pass_through_env=pass_through, on_fail_node=control.mark_failed)
        refresh = not brings_own_nodes(req, spec.params.runNode)
        return notifier, ConsoleJobServices(spec, client, console, pass_through, refresh)
    return connect


class DevmodeDownloads(NoConsole):
    """devmode turns the console's callbacks off, not its downloads: as under the original, custom
    scripts by ``scriptId`` and file parameters come from the configured console. The client is
    made on first use, so a devmode job that needs neither never talks to it."""

    def __init__(self, spec: JobSpec, cfg: Config, req: JobRequest) -> None:
        super().__init__(FileParams(cfg.data_dir, spec.jobdir.file_dir, fetch=self._fetch_file), cfg.path)
        self.spec, self.cfg, self.req = spec, cfg, req
        self._lock = threading.Lock()
        self._made: _Downloads | None = None

    def _downloads(self) -> _Downloads:
        with self._lock:
            if self._made is None:
                tenant = str(self.req.pass_through_env.get("tenant") or self.spec.params.tenant
                             or self.cfg.tenant or "none")
                try:
                    client = console_client(self.cfg, tenant)
                except JobInputError as exc:
                    raise OSError(str(exc)) from None
                self._made = _Downloads(self.spec, client)
            return self._made

    def _fetch_file(self, file_id: int, cache_dir: Path) -> tuple[Path, str]:
        return self._downloads().fetch_file(file_id, cache_dir)

    def fetch_script(self, op: Operation) -> Path:
        return self._downloads().fetch_script(op)

    def script_libs(self, op: Operation) -> list[Path]:
        made = self._made
        return made.libs.get(op.opId, []) if made is not None else []

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, None
        if made is not None:
            made.client.close()


def _devmode_downloads(cfg: Config, req: JobRequest) -> Connect:
    def connect(spec: JobSpec, control: JobControl, console: ConsoleLog) -> tuple[Notifier, ConsoleServices]:
        return NullNotifier(), DevmodeDownloads(spec, cfg, req)
    return connect


# --- helpers for the non-run modes --------------------------------------------------------------
def notify_job_status(job_id: str, status: str, pass_through: dict[str, Any] | None = None) -> None:
    """``--abort``/``--pause`` found no running job: tell the console directly, through the job's
    outbox so that nothing is lost if the console is down right now."""
    cfg = load_config()
    try:
        jobdir = JobDir.for_job(cfg.data_dir, job_id)
        client = console_client(cfg)
    except (UnsafeName, JobInputError) as exc:
        print(f"WARN: console not told job {job_id} is {status}: {exc}")
        return
    req = JobRequest(job_id=job_id, pass_through_env=dict(pass_through or {}))
    params = _peek_params(req, jobdir) if jobdir.params.exists() else {}
    if params.get("tenant"):
        client.tenant = str(params["tenant"])
    notifier = ConsoleNotifier.open(client, jobdir.root, job_id=_effective_job_id(req, params),
                                    runner_id=_runner_id(req, params), pass_through_env=_pass_through(req, params))
    notifier.job_status(status=status)
    configured = load_settings().outbox_flush_secs
    if not notifier.flush(30.0 if configured is None else configured):
        print(f"WARN: console {client.base_url} not reachable; job {job_id} {status} stays queued in "
              f"{jobdir.root / 'outbox'} for the next run of this job.")
    notifier.close()
    client.close()
