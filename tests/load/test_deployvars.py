"""Deploy variables of release jobs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autoexec.load.deployvars import DeployVarsError, deploy_env


class Lookup:
    def __init__(self) -> None:
        self.asked: list[tuple] = []

    def ids(self, sys_name: str, module_name: str, env_name: str | None) -> dict[str, Any]:
        self.asked.append(("ids", sys_name, module_name, env_name))
        return {"sysId": 11, "moduleId": 22, "envId": 33}

    def runner_group(self, sys_id: str, module_id: str, env_id: str | None) -> Any:
        self.asked.append(("group", sys_id, module_id, env_id))
        return {"1": "runner-a"}


def test_no_deploy_path_adds_nothing(tmp_path: Path) -> None:
    assert deploy_env({}, tmp_path / "data", tmp_path, None, print) == {}


def test_names_ids_and_directories_from_the_console(tmp_path: Path) -> None:
    lookup = Lookup()
    env = {"DEPLOY_PATH": "shop/api/prod", "VERSION": "1.2", "BUILD_NO": "7"}
    out = deploy_env(env, tmp_path / "data", tmp_path, lookup, print)
    data = tmp_path / "data/verdata/11/22"
    assert (out["SYS_NAME"], out["MODULE_NAME"], out["ENV_NAME"]) == ("shop", "api", "prod")
    assert (out["DEPLOY_ID_PATH"], out["ID_PATH"], out["ENV_ID"]) == ("11/22/33", "11/22/33", "33")
    assert json.loads(out["DEPLOY_RUNNERGROUP"]) == {"1": "runner-a"}
    assert out["BUILD_PATH"] == str(data / "artifact/1.2/build/7")
    assert out["APP_DIST"] == str(data / "artifact/1.2/env/33/app")
    assert out["PRJ_PATH"] == str(data / "workspace/project") and out["TOOLS_PATH"] == str(tmp_path / "tools")
    assert lookup.asked == [("ids", "shop", "api", "prod"), ("group", "11", "22", "33")]


def test_ids_given_by_the_job_are_not_looked_up(tmp_path: Path) -> None:
    lookup = Lookup()
    out = deploy_env({"DEPLOY_PATH": "a/b", "DEPLOY_ID_PATH": "1/2", "DEPLOY_RUNNERGROUP": "{}"},
                     tmp_path, tmp_path, lookup, print)
    assert out["SYS_ID"] == "1" and "ENV_ID" not in out and "APP_DIST" not in out and lookup.asked == []


def test_devmode_without_ids_warns_and_keeps_the_names(tmp_path: Path) -> None:
    said: list[str] = []
    out = deploy_env({"DEPLOY_PATH": "a/b"}, tmp_path, tmp_path, None, said.append)
    assert out["NAME_PATH"] == "a/b" and "ID_PATH" not in out and "DEPLOY_ID_PATH" in said[0]


@pytest.mark.parametrize("path", ["justone", "a//b", "a/b/c/d"])
def test_malformed_deploy_path_is_named(tmp_path: Path, path: str) -> None:
    with pytest.raises(DeployVarsError, match="DEPLOY_PATH"):
        deploy_env({"DEPLOY_PATH": path, "DEPLOY_ID_PATH": "1/2"}, tmp_path, tmp_path, None, print)
