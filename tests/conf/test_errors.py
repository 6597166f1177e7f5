"""Every error autoexec raises on purpose has one root, and keeps its builtin base."""
from __future__ import annotations

import importlib
import pkgutil

import autoexec
from autoexec.conf.errors import AutoexecError


def _all_error_classes() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for info in pkgutil.walk_packages(autoexec.__path__, "autoexec."):
        if ".toollib" in info.name or ".plugins" in info.name or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == info.name:
                found.append(value)
    return found


def test_every_autoexec_exception_has_the_common_root() -> None:
    classes = _all_error_classes()
    assert len(classes) >= 30
    assert [c.__qualname__ for c in classes if not issubclass(c, AutoexecError)] == []


def test_builtin_bases_are_kept() -> None:
    from autoexec.jobdir.layout import UnsafeName
    from autoexec.ops.tools import ToolNotFound
    from autoexec.conf.secrets import SecretError

    assert issubclass(SecretError, ValueError) and issubclass(UnsafeName, ValueError)
    assert issubclass(ToolNotFound, LookupError)
