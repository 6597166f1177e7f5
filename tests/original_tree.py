"""Load-check the runner-side tools of a plugin tree under autoexec's tool environment.

A tool "loads" when its interpreter accepts it with every module it uses: ``perl -c`` for Perl
tools (compiles the script and runs its ``use`` lines), and for Python tools an import of the file
as a module (its top level, imports included, runs; the ``__main__`` block does not). Used by the
optional test against a local copy of the original's sources and runnable on its own:

    python tests/original_tree.py /tmp/orig      # prints per-language counts and each failure
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from autoexec.conf.config import BUNDLED_PLUGINS
from autoexec.ops.toolenv import library_env

_PY_LOAD = ("import importlib.machinery, sys; sys.argv = sys.argv[1:]; "
            "importlib.machinery.SourceFileLoader('autoexec_tool_under_check', sys.argv[0]).load_module()")


@dataclass(frozen=True)
class LoadResult:
    tool: str
    language: str
    ok: bool
    message: str


def runner_side_tools(plugin_dir: Path) -> list[tuple[str, Path, str]]:
    """``(opName, path, language)`` of every ``plugins/local/<bundle>/<tool>`` with a descriptor
    whose first line names perl or python."""
    found = []
    for desc in sorted((plugin_dir / "local").glob("*/*.json")):
        tool = desc.with_suffix("")
        if not tool.is_file():
            continue
        with open(tool, "rb") as fh:
            first = fh.readline().decode("utf-8", "replace")
        language = "perl" if "perl" in first else "python" if "python" in first else ""
        if language:
            found.append((f"{tool.parent.name}/{tool.name}", tool, language))
    return found


def check_tool(tool: Path, language: str, plugin_dirs: list[Path], cwd: Path) -> tuple[bool, str]:
    env = dict(os.environ)
    env.update(library_env(tool.parent, plugin_dirs, env))
    env["TERM"] = "dumb"
    # Python tools run on autoexec's interpreter (autoexec.ops.tools.local_tool_argv)
    cmd = ["perl", "-c", str(tool)] if language == "perl" else [sys.executable, "-c", _PY_LOAD, str(tool)]
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    text = (proc.stderr or proc.stdout).strip().splitlines()
    return proc.returncode == 0, missing_module(text) or (text[-1] if text else "")


def missing_module(lines: list[str]) -> str:
    """``Perl module Foo::Bar`` / ``Python module foo`` when that is why a tool did not load."""
    for line in lines:
        found = re.search(r"Can't locate (\S+)\.pm in @INC|No module named '([^']+)'", line)
        if found:
            return f"Perl module {found.group(1).replace('/', '::')}" if found.group(1) else f"Python module {found.group(2)}"
    return ""


def check_tree(tree_root: Path, cwd: Path, home_plugins: Path | None = None) -> list[LoadResult]:
    plugin_dir = tree_root / "plugins"
    plugin_dirs = [plugin_dir] + ([home_plugins] if home_plugins else []) + [BUNDLED_PLUGINS]
    tools = runner_side_tools(plugin_dir)
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda t: check_tool(t[1], t[2], plugin_dirs, cwd), tools))
    return [LoadResult(name, language, ok, msg) for (name, _, language), (ok, msg) in zip(tools, outcomes, strict=True)]


def summary(results: list[LoadResult]) -> dict[str, tuple[int, int]]:
    total: Counter[str] = Counter(r.language for r in results)
    ok: Counter[str] = Counter(r.language for r in results if r.ok)
    return {lang: (ok[lang], total[lang]) for lang in sorted(total)}


if __name__ == "__main__":
    results = check_tree(Path(sys.argv[1]).resolve(), Path.cwd())
    for lang, (ok, total) in summary(results).items():
        print(f"{lang}: {ok} of {total} load")
    for r in results:
        if not r.ok:
            print(f"FAIL {r.language} {r.tool}: {r.message}")
