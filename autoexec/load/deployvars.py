"""Deploy variables: a job whose environment names ``DEPLOY_PATH`` ("automatic
release" jobs) gets the system/module/environment names and ids and the standard directories of
its version data, so that deploy tools find workspace, artifacts and mirrors where the original put
them. Ids not given by the job are asked from the console (production mode)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Protocol

from autoexec.conf.errors import AutoexecError


class DeployLookup(Protocol):
    def ids(self, sys_name: str, module_name: str, env_name: str | None) -> dict[str, Any]: ...

    def runner_group(self, sys_id: str, module_id: str, env_id: str | None) -> Any: ...


class DeployVarsError(AutoexecError):
    """The job names a deploy path that cannot be resolved; the message says which part."""


def deploy_env(env: dict[str, str], data_dir: Path, home: Path, lookup: DeployLookup | None,
               warn: Callable[[str], None]) -> dict[str, str]:
    """The variables to add to ``env`` (which is not changed); empty when DEPLOY_PATH is unset."""
    deploy_path = env.get("DEPLOY_PATH", "").strip("/")
    if not deploy_path:
        return {}
    names = deploy_path.split("/")
    if len(names) not in (2, 3) or not all(names):
        raise DeployVarsError(f"DEPLOY_PATH {deploy_path!r} must be <system>/<module>[/<environment>]")
    out = {"NAME_PATH": deploy_path, "SYS_NAME": names[0], "MODULE_NAME": names[1],
           "TOOLS_PATH": str(home / "tools")}
    if len(names) == 3:
        out["ENV_NAME"] = names[2]
    id_path = env.get("DEPLOY_ID_PATH", "").strip("/")
    if not id_path:
        if lookup is None:
            warn(f"WARN: DEPLOY_ID_PATH not set and no console to look up {deploy_path}; "
                 f"deploy id variables are not set.")
            return out
        found = lookup.ids(names[0], names[1], names[2] if len(names) == 3 else None)
        parts = [found.get("sysId"), found.get("moduleId")] + ([found.get("envId")] if len(names) == 3 else [])
        if any(p in (None, "") for p in parts):
            raise DeployVarsError(f"console has no ids for DEPLOY_PATH {deploy_path!r}: {found}")
        id_path = "/".join(str(p) for p in parts)
        out["DEPLOY_ID_PATH"] = id_path
    ids = id_path.split("/")
    if len(ids) not in (2, 3) or not all(ids):
        raise DeployVarsError(f"DEPLOY_ID_PATH {id_path!r} must be <sysId>/<moduleId>[/<envId>]")
    out.update({"ID_PATH": id_path, "SYS_ID": ids[0], "MODULE_ID": ids[1]})
    env_id = ids[2] if len(ids) == 3 else None
    if env_id:
        out["ENV_ID"] = env_id
    if not env.get("DEPLOY_RUNNERGROUP") and lookup is not None:
        group = lookup.runner_group(ids[0], ids[1], env_id)
        out["DEPLOY_RUNNERGROUP"] = group if isinstance(group, str) else json.dumps(group, ensure_ascii=False)
    data_path = data_dir / "verdata" / ids[0] / ids[1]
    ver_root = data_path / "artifact" / env.get("VERSION", "")
    build_root = ver_root / "build"
    dist_root = ver_root / "env"
    out.update({
        "DATA_PATH": str(data_path), "VER_ROOT": str(ver_root), "PRJ_ROOT": str(data_path / "workspace"),
        "PRJ_PATH": str(data_path / "workspace" / "project"), "MIRROR_ROOT": str(data_path / "artifact" / "mirror"),
        "BUILD_ROOT": str(build_root), "BUILD_PATH": str(build_root / env.get("BUILD_NO", "")),
        "DIST_ROOT": str(dist_root),
    })
    if env_id:
        out["APP_DIST"] = str(dist_root / env_id / "app")
        out["DB_SCRIPT"] = str(dist_root / env_id / "db")
    return out
