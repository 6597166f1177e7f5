"""paramiko for the SSH transport modules, imported without ``invoke``.

``paramiko.config`` imports ``invoke`` when it is installed (which pulls in ``unittest.mock``,
YAML and more) only to run ``Match exec`` lines of an ``ssh_config`` file, which autoexec never
reads; that import was a large part of every SSH job's start-up CPU. The import is refused while
paramiko loads (paramiko then leaves ``Match exec`` unsupported) and allowed again afterwards.
"""
from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Sequence


class _RefuseInvoke(MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname == "invoke" or fullname.startswith("invoke."):
            raise ImportError("invoke is not loaded with paramiko by autoexec", name=fullname)
        return None


_refuse = _RefuseInvoke()
sys.meta_path.insert(0, _refuse)
try:
    import paramiko
finally:
    sys.meta_path.remove(_refuse)

__all__ = ["paramiko"]
