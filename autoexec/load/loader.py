"""Job loader: CLI/deployment inputs -> a validated job directory and a :class:`JobRuntime`.

Everything is validated before anything is written into the job directory, so a malformed
params or nodes file costs nothing already recorded (issue 2, item 3).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from autoexec.conf.config import Config, load_config
from autoexec.job.control import JobControl
from autoexec.jobdir.fileio import write_new
from autoexec.jobdir.layout import JobDir, UnsafeName
from autoexec.jobdir.logs import ConsoleLog
from autoexec.conf.masking import Masker
from autoexec.models.nodes import RUNNER_NODE, NodesFile, NodesHeader, load_nodes, parse_nodes_lines
from autoexec.models.params import JobInputError, Params, load_params
from autoexec.models.request import check_request
from autoexec.job.env import JobEnv
from autoexec.jobdir.lock import JobLock
from autoexec.job.spec import JobSpec, frozen
from autoexec.events.notify import Notifier, NullNotifier
from autoexec.job.runtime import JobRuntime
from autoexec.conf.secrets import OPTION_PREFIX
from autoexec.job.services import ConsoleServices, NoConsole
from autoexec.conf.settings import load_settings
from autoexec.jobdir.store import NodeOutput

Connect = Callable[[JobSpec, JobControl, ConsoleLog], tuple[Notifier, ConsoleServices]]
"""How a job reaches its console (production mode): its notifier and console services, made once
the spec is known."""


@dataclass
class JobRequest:
    """The job inputs, identical for the CLI and for a Prefect deployment run: a field is the job
    flow's parameter of the same name, parsed (:meth:`from_flow_parameters`). ``params``/``nodes``
    are inline inputs (the params object, the nodes file's text); ``node_ids`` is the selection."""

    job_id: str = "0"
    exec_user: str = "anonymous"
    params_file: str = ""
    nodes_file: str = ""
    params: dict[str, Any] | None = None
    """Inline params (deployment runs); wins over ``params_file``."""
    nodes: str | None = None
    """Inline nodes file text, JSON lines (deployment runs); wins over ``nodes_file``."""
    force: bool = False
    first_fire: bool = False
    reuse_console_log: bool = False
    dev_mode: bool = False
    no_fire_next: bool = False
    pass_through_env: dict[str, Any] = field(default_factory=dict)
    phase_groups: set[int] | None = None
    phases: set[str] | None = None
    node_ids: set[int] | None = None
    """The selected nodes (``--nodes``) by resourceId; ``None`` runs them all."""
    round_no: int | None = None
    """Run only this grayScale round of the selected group(s): a coordinator is the barrier."""
    group_nodes: dict[str, str] | None = None
    """Inline node lists of groups (groupNo -> JSON lines), written as the per-group nodes files;
    given (even empty), they replace every per-group and per-phase nodes file of the job dir."""
    phase_nodes: dict[str, str] | None = None
    """Inline node lists of phases (phase name -> JSON lines), as the per-phase nodes files."""
    sql_files: str = ""

    @classmethod
    def from_flow_parameters(cls, given: Mapping[str, Any]) -> JobRequest:
        """The job flow's parameters (flat, as the Prefect UI form, ``prefect deployment run -p``
        and REST callers send them) -> the request: the one place that parses them. Every flow
        parameter is a field of the same name, or one of :data:`FLOW_ONLY_PARAMETERS`."""
        values = {name: value for name, value in given.items() if name not in FLOW_ONLY_PARAMETERS}
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise TypeError(f"job flow parameter(s) {', '.join(unknown)}: not a JobRequest field; add the field "
                            f"or list the name in FLOW_ONLY_PARAMETERS with what the flow does with it")
        runner_id = given.get("runner_id")
        pass_through = dict(values.get("pass_through_env") or {})
        if runner_id:  # a part of a coordinated job: that runner's nodes only
            pass_through["runnerId"] = int(runner_id)
        round_no = values.get("round_no")
        values.update(
            job_id=str(values.get("job_id", "0")), pass_through_env=pass_through,
            round_no=int(round_no) if round_no else None,
            phase_groups=parse_group_numbers(_id_text(values.get("phase_groups"))),
            phases=parse_name_list(values.get("phases")),
            node_ids=parse_id_list(_id_text(values.get("node_ids")), "nodes"),
        )
        return cls(**values)


FLOW_ONLY_PARAMETERS: dict[str, str] = {
    "runner_id": "a coordinated job's part: becomes pass_through_env['runnerId'] (which the CLI takes "
                 "from --passthroughenv), and the flow starts the part's heartbeat",
    "after_runs": "a coordinated job's part waits for these flow runs before it takes the job's lock; "
                  "not an input of the job",
}
"""Job flow parameters that are no :class:`JobRequest` field, and why."""

CLI_ONLY_FIELDS: dict[str, str] = {
    "reuse_console_log": "--reuseconslog; a flow run's console log follows first_fire and the run count",
    "sql_files": "--sqlfiles (SQL file descriptors for sqlfile tools): no flow parameter takes it yet",
}
""":class:`JobRequest` fields that are no job flow parameter, and why."""


def _id_text(value: Any) -> str:
    """A flow's id list: text, or one number (``-p node_ids=101`` sends an integer)."""
    return "" if value is None else str(value)


def parse_id_list(text: str, what: str, minimum: int = 1) -> set[int] | None:
    if not text:
        return None
    try:
        ids = {int(x) for x in text.split(",") if x.strip()}
    except ValueError:
        raise JobInputError(f"--{what}: {text!r} must be a comma-separated list of integers") from None
    if any(i < minimum for i in ids):
        raise JobInputError(f"--{what}: {text!r}: ids must be {minimum} or more")
    return ids


def parse_group_numbers(text: str) -> set[int] | None:
    """``--phasegroups`` / the flow's ``phase_groups``: groupNo counts from 0 in the console's
    runFlow, so 0 is a group like any other (one rule for the CLI, the flow and the coordinator)."""
    return parse_id_list(text, "phasegroups", minimum=0)


def parse_name_list(text: str | None) -> set[str] | None:
    """``--phases a, b`` -> ``{"a", "b"}``; ``None`` for no names (run them all)."""
    return {p.strip() for p in (text or "").split(",") if p.strip()} or None


def resolve_input(path_text: str, jobdir: JobDir) -> Path:
    """Relative paths: the current directory first (what a person typing the command means),
    then the job directory (what the original did)."""
    path = Path(path_text).expanduser()
    if path.is_absolute() or path.exists():
        return path.resolve()
    in_job = jobdir.root / path
    return in_job if in_job.exists() else path.resolve()


def _copy_if_changed(source: Path, dest: Path) -> None:
    if source.resolve() == dest.resolve():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and dest.read_bytes() == source.read_bytes():
        os.chmod(dest, 0o600)
        return
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    write_new(tmp, source.read_bytes())  # node passwords: owner only
    os.replace(tmp, dest)


NO_PARAMS_HINT = "give --paramsfile (devmode) or configure the console to download them"


@dataclass(frozen=True)
class ResolvedInputs:
    """What a run of a request reads, validated, with nothing written yet. The run places it in the
    job dir (:func:`prepare_job_dir`); the dry run reads it where it is (:meth:`placed`,
    :meth:`nodes_at`). So which source wins (inline, a given file, the job dir's copy) is decided
    once, in :func:`resolve_inputs`."""

    jobdir: JobDir
    params: Params
    params_inline: dict[str, Any] | None = None
    """Inline params: written as params.json."""
    params_src: Path | None = None
    """A params file to copy in as params.json (``None``: inline, or the job dir's own copy)."""
    nodes_text: str | None = None
    """params ``runNode`` or inline nodes: written as nodes.json."""
    nodes_src: Path | None = None
    """A nodes file to copy in as nodes.json (``None``: text above, or the job dir's own copy)."""
    own_lists: dict[Path, str] | None = None
    """Inline per-group/per-phase node lists by their job dir path; given, they are the only ones."""

    def placed(self, path: Path) -> bool:
        """Whether the job dir has ``path`` once a run has placed these inputs."""
        jd = self.jobdir
        if path == jd.params:
            return self.params_inline is not None or self.params_src is not None or path.exists()
        if path == jd.nodes:
            return self.nodes_text is not None or self.nodes_src is not None or path.exists()
        if self.own_lists is not None and _is_own_list(jd, path):
            return path in self.own_lists
        return path.exists()

    def nodes_at(self, path: Path) -> NodesFile:
        """The nodes a run reads at job dir path ``path`` once these inputs are placed (none when
        nothing is there)."""
        text = self.nodes_text if path == self.jobdir.nodes else (self.own_lists or {}).get(path)
        if text is not None:
            return parse_nodes_lines(text.splitlines(), str(path))
        source = self.nodes_src if path == self.jobdir.nodes and self.nodes_src is not None else path
        if not self.placed(path) or not source.exists():
            return NodesFile(header=NodesHeader(totalCount=0), nodes=[])
        return load_nodes(source)


_OWN_LISTS = ("nodes-gp-*.json", "nodes-ph-*.json")
"""The job dir's per-group and per-phase node lists (:meth:`JobDir.group_nodes`, :meth:`JobDir.phase_nodes`)."""


def _is_own_list(jobdir: JobDir, path: Path) -> bool:
    return path.parent == jobdir.root and any(fnmatch.fnmatch(path.name, pattern) for pattern in _OWN_LISTS)


def resolve_inputs(req: JobRequest, jobdir: JobDir, no_params_hint: str = NO_PARAMS_HINT) -> ResolvedInputs:
    """Which params and nodes a run of ``req`` uses, all validated, nothing written. Params:
    inline, else ``params_file``, else the job dir's params.json. Job nodes: params ``runNode``,
    else inline ``nodes``, else ``nodes_file``, else the job dir's nodes.json (if any). Relative
    file names: see :func:`resolve_input`."""
    check_request(req)
    params_src: Path | None = None
    if req.params is not None:
        from autoexec.models.params import parse_params

        params = parse_params(req.params, "params (inline)")
    elif req.params_file:
        params_src = resolve_input(req.params_file, jobdir)
        if not params_src.is_file():
            raise JobInputError(f"{req.params_file}: params file not found")
        params = load_params(params_src)
    elif jobdir.params.exists():
        params = load_params(jobdir.params)
    else:
        raise JobInputError(f"{jobdir.params}: no params for job {req.job_id}: {no_params_hint}")
    nodes_text: str | None = None
    nodes_src: Path | None = None
    if params.runNode:
        runner_id = _runner_id(req, params)
        header = NodesHeader(totalCount=len(params.runNode), localRunnerId=runner_id, jobRunnerIds=[runner_id])
        lines = [json.dumps(header.model_dump())] + [json.dumps(n, ensure_ascii=False) for n in params.runNode]
        parse_nodes_lines(lines, "params runNode")
        nodes_text = "\n".join(lines) + "\n"
    elif req.nodes is not None:
        parse_nodes_lines(req.nodes.splitlines(), "nodes (inline)")
        nodes_text = req.nodes
    elif req.nodes_file:
        nodes_src = resolve_input(req.nodes_file, jobdir)
        if not nodes_src.is_file():
            raise JobInputError(f"{req.nodes_file}: nodes file not found")
        load_nodes(nodes_src)
    elif jobdir.nodes.exists():
        load_nodes(jobdir.nodes)
    return ResolvedInputs(jobdir=jobdir, params=params, params_inline=req.params, params_src=params_src,
                          nodes_text=nodes_text, nodes_src=nodes_src, own_lists=_own_node_lists(req, jobdir))


def console_gives_params(req: JobRequest, jobdir: JobDir) -> bool:
    """Production mode, as the original: params come from the console when none are given and the
    job is first fired or has no params.json yet."""
    return req.params is None and not req.params_file and (req.first_fire or not jobdir.params.exists())


def brings_own_nodes(req: JobRequest, run_node: Any) -> bool:
    """params ``runNode``, a nodes file or inline nodes: no job-level nodes download, no refreshes."""
    return bool(run_node) or bool(req.nodes_file) or req.nodes is not None


def console_gives_nodes(req: JobRequest, jobdir: JobDir, run_node: Any) -> bool:
    """Production mode: the job's nodes.json comes from the console unless the job brings its own."""
    return not brings_own_nodes(req, run_node) and (req.first_fire or not jobdir.nodes.exists())


def job_dir_of(req: JobRequest, cfg: Config) -> JobDir:
    try:
        return JobDir.for_job(cfg.data_dir, req.job_id)
    except UnsafeName as exc:
        raise JobInputError(f"--jobid: {exc}") from None


def prepare_job_dir(req: JobRequest, cfg: Config) -> tuple[JobDir, Params]:
    """Validate inputs (:func:`resolve_inputs`), then place params.json / nodes.json in the job dir."""
    jobdir = job_dir_of(req, cfg)
    inputs = resolve_inputs(req, jobdir)
    # Everything is valid: only now touch the job dir.
    jobdir.make_base_dirs()
    if inputs.params_inline is not None:
        from autoexec.jobdir.store import write_json_atomic

        write_json_atomic(jobdir.params, inputs.params_inline, indent=4)
    elif inputs.params_src is not None:
        _copy_if_changed(inputs.params_src, jobdir.params)
    if inputs.nodes_text is not None:
        _write_private(jobdir.nodes, inputs.nodes_text)
    elif inputs.nodes_src is not None:
        _copy_if_changed(inputs.nodes_src, jobdir.nodes)
    if inputs.own_lists is not None:
        for stale in [p for pattern in _OWN_LISTS for p in jobdir.root.glob(pattern)]:
            if stale not in inputs.own_lists:
                stale.unlink(missing_ok=True)
        for path, text in inputs.own_lists.items():
            _write_private(path, text)
    return jobdir, inputs.params


def _own_node_lists(req: JobRequest, jobdir: JobDir) -> dict[Path, str] | None:
    """Inline per-group/per-phase node lists, validated, by the job dir path they go to."""
    if req.group_nodes is None and req.phase_nodes is None:
        return None
    out: dict[Path, str] = {}
    for what, lists in (("group_nodes", req.group_nodes), ("phase_nodes", req.phase_nodes)):
        for key, text in (lists or {}).items():
            if not isinstance(text, str):
                raise JobInputError(f"{what}[{key}]: expected nodes as JSON lines text")
            parse_nodes_lines(text.splitlines(), f"{what}[{key}]")
            if what == "group_nodes":
                try:
                    path = jobdir.group_nodes(int(key))
                except ValueError:
                    raise JobInputError(f"{what}[{key}]: a group number is an integer") from None
            else:
                path = jobdir.phase_nodes(str(key))
            out[path] = text
    return out


def _write_private(path: Path, text: str) -> None:
    """Node lists hold passwords: owner only, replaced atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    write_new(tmp, text.encode("utf-8"))
    os.replace(tmp, path)


def _runner_id(req: JobRequest, params: Params) -> int:
    value = req.pass_through_env.get("runnerId") or params.passThroughEnv.get("runnerId") \
        or os.environ.get("RUNNER_ID") or 1
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise JobInputError(f"runnerId {value!r} is not an integer") from None
    if number <= 0:
        raise JobInputError(f"runnerId {value!r} must be positive")
    return number


def _env_text(value: Any) -> str:
    if value is None:
        return "null"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def build_runtime(req: JobRequest, cfg: Config | None = None, notifier: Notifier | None = None,
                  control: JobControl | None = None,
                  complete_config: Callable[[Params, Config], Config] | None = None,
                  deploy_lookup: Any = None, connect: Connect | None = None,
                  job_lock: JobLock | None = None) -> JobRuntime:
    """``complete_config`` lets production mode finish the configuration once params are known
    (their tenant, a MongoDB named by the console) before anything opens it; ``connect`` gives the
    job its console (without it: ``notifier`` or none, and :class:`NoConsole`)."""
    cfg = cfg or load_config()
    jobdir, params = prepare_job_dir(req, cfg)
    if complete_config is not None:
        cfg = complete_config(params, cfg)
    cfg = _mongodb_from_block(cfg)
    job_id = req.job_id if req.job_id not in ("", "0") else params.job_id
    decrypt = _decryptor(cfg)
    masker = job_masker(params, cfg, decrypt)
    console = ConsoleLog.open(jobdir.console_log, jobdir.console_hislog_dir, req.first_fire, req.exec_user,
                              reuse=req.reuse_console_log, mask=masker)
    if params.job_id != job_id and params.job_id != "0":
        console.line(f"WARN: params.json jobId {params.job_id} differs from --jobid {job_id}; using {job_id}.")
    from autoexec.ops.toolenv import point_tree_configs

    point_tree_configs(cfg.plugin_dirs, cfg.home, cfg.path, console.line)
    pass_through = {**params.passThroughEnv, **req.pass_through_env}
    runner_id = _runner_id(req, params)
    tenant = params.tenant or pass_through.get("tenant") or os.environ.get("tenant") or os.environ.get("TENANT") or "none"
    env = dict(os.environ)
    env.update({
        "TERM": "dumb", "HISTSIZE": "0", "AUTOEXEC_PID": str(os.getpid()), "AUTOEXEC_USER": req.exec_user,
        "AUTOEXEC_HOME": str(cfg.home), "JOB_PATH": str(jobdir.root), "JOB_PARAMS_PATH": str(jobdir.params),
        "DEPLOY_POSSIBLE_ENCS": cfg.possible_encodings, "AUTOEXEC_JOBID": job_id,
        "AUTOEXEC_WORK_PATH": str(jobdir.root), "AUTOEXEC_TENANT": tenant, "RUNNER_ID": str(runner_id),
        "PASSTHROUGH_ENV": json.dumps(pass_through, ensure_ascii=False),
    })
    if req.dev_mode:
        env["AUTOEXEC_DEV_MODE"] = "1"
    if req.sql_files:
        env["_SQL_FILES"] = req.sql_files
    for key, value in params.opt.items():
        text = _env_text(value)
        env[key] = decrypt(text) if text.startswith(OPTION_PREFIX) else text  # plaintext, not {RC4} text as the original passed on
    for key, value in params.environment.items():
        env[key] = _env_text(value)
    from autoexec.load.deployvars import DeployVarsError, deploy_env

    try:
        env.update(deploy_env(env, cfg.data_dir, cfg.home, deploy_lookup, console.line))
    except DeployVarsError as exc:
        raise JobInputError(str(exc)) from None
    spec = JobSpec(
        job_id=job_id, jobdir=jobdir, params=params, config=cfg, exec_user=req.exec_user, force=req.force,
        runner_id=runner_id, phase_filter=frozen(req.phases), group_filter=frozen(req.phase_groups),
        node_filter=frozen(req.node_ids), round_filter=req.round_no, max_parallel=_max_parallel(),
        no_fire_next=req.no_fire_next, dev_mode=req.dev_mode, decrypt=decrypt,
    )
    control = control or JobControl()
    services: ConsoleServices
    if connect is not None:
        notifier, services = connect(spec, control, console)
    else:
        from autoexec.job.files import FileParams

        notifier = notifier or NullNotifier()
        services = NoConsole(FileParams(cfg.data_dir, jobdir.file_dir), cfg.path)
    mirror = _open_mirror(cfg, console)
    if hasattr(mirror, "mask"):
        mirror.mask = masker  # MongoDB documents are written with the job's secrets masked
    return JobRuntime(
        spec=spec, env=JobEnv(env, job_id=job_id, notifier=notifier, masker=masker, store=mirror),
        control=control, notifier=notifier, console=console, services=services, masker=masker,
        mirror=mirror, runner_output=NodeOutput(jobdir.node_output("local-0-0"), job_id, RUNNER_NODE, mirror),
        job_lock=job_lock,
    )


def release_runtime(rt: JobRuntime, flush_secs: float | None = None) -> bool:
    """Deliver what is queued for the console (bounded), then close what the job opened.
    ``False`` when callbacks are still pending: they stay in the job's outbox for its next run."""
    if flush_secs is None:
        configured = load_settings().outbox_flush_secs
        flush_secs = 60.0 if configured is None else configured
    delivered = rt.notifier.flush(flush_secs)
    if not delivered:
        rt.console.line(f"WARN: console unreachable: callbacks of job {rt.job_id} stay queued in "
                        f"{rt.jobdir.root / 'outbox'} and are sent by the next run of this job.")
    if rt.mirror is not None and hasattr(rt.mirror, "close"):
        rt.mirror.close()
    rt.notifier.close()
    try:
        rt.services.close()
    except Exception:  # noqa: BLE001 - closing must not hide the job's outcome
        pass
    rt.console.close()
    return delivered


def _mongodb_from_block(cfg: Config) -> Config:
    """``AUTOEXEC_MONGODB_BLOCK`` names a Prefect block to use when config.ini has no ``db.url``."""
    name = load_settings().mongodb_block  # importing autoexec.blocks imports Prefect
    if cfg.db_url or not name:
        return cfg
    from dataclasses import replace

    from autoexec.conf.block_names import MONGODB_BLOCK_ENV
    from autoexec.blocks.lookup import BlockUnavailable, mongodb_connection

    try:
        values = mongodb_connection(name).to_config_values()
    except BlockUnavailable as exc:
        raise JobInputError(f"{MONGODB_BLOCK_ENV}: {exc}") from None
    return replace(cfg, db_url=values["db.url"], db_name=values["db.name"], db_username=values["db.username"],
                   db_password=values["db.password"], db_max_pool_size=int(values["db.maxPoolSize"]))


def _open_mirror(cfg: Config, console: ConsoleLog) -> Any:
    """MongoDB when ``db.url`` is configured (also in devmode, as the original); never required."""
    if not cfg.db_url:
        return None
    from autoexec.jobdir.mongo import open_store

    try:
        return open_store(cfg)
    except Exception as exc:  # noqa: BLE001 - local files stay authoritative
        console.line(f"WARN: MongoDB {cfg.db_name} not usable, continuing with local files only: "
                     f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        return None


def _max_parallel() -> int:
    return max(1, load_settings().max_parallel)


def job_masker(params: Params, cfg: Config, decrypt: Callable[[str], str]) -> Masker:
    """The job's secrets known before anything runs; node passwords join per nodes file
    (``groups.plan_phase``), credential blocks and console accounts when they are fetched."""
    from autoexec.conf.secrets import config_secrets, params_secrets

    return Masker([*config_secrets(cfg), *params_secrets(params.model_dump(by_alias=True), decrypt)])


def _decryptor(cfg: Config) -> Any:
    def decrypt(value: str) -> str:
        try:
            from autoexec.conf.secrets import decrypt_secret, is_encrypted
        except ImportError:
            return value
        if not is_encrypted(value):
            return value
        return decrypt_secret(value, cfg.password_key)
    return decrypt
