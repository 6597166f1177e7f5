"""The SSH transport loads paramiko without ``invoke`` (start-up cost of every SSH job), and
leaves ``invoke`` importable for anything else in the process."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

CHECK = """
import sys
import autoexec.transports.ssh
import paramiko.config
print("invoke" in sys.modules, paramiko.config.invoke is None, isinstance(paramiko.config.invoke_import_error, ImportError))
import invoke
print(invoke.__name__)
"""


@pytest.mark.skipif(importlib.util.find_spec("invoke") is None, reason="invoke is not installed here")
def test_ssh_transport_loads_paramiko_without_invoke() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["False True True", "invoke"]
