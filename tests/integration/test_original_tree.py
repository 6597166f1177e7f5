"""Optional: load every runner-side Perl and Python tool with a descriptor of a local copy of the
original's sources under autoexec's tool environment (see tests/original_tree.py).

Runs when ``AUTOEXEC_TEST_ORIGINAL_TREE`` names the directory holding the original's ``plugins/``
(for instance ``git archive HEAD -- plugins lib conf ':(exclude)plugins/local/media' | tar -x -C
/tmp/orig`` from its repository). That tree is never committed here. Run with ``-s`` to see the
counts and each failure.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from autoexec.ops.toolenv import CORE_LIB_DIRS
from tests.original_tree import check_tree, summary

pytestmark = pytest.mark.integration

ORIGINAL = os.environ.get("AUTOEXEC_TEST_ORIGINAL_TREE", "")


@pytest.mark.skipif(not ORIGINAL, reason="AUTOEXEC_TEST_ORIGINAL_TREE is not set (a local copy of the original's "
                                         "sources, the directory holding plugins/)")
def test_runner_side_tools_of_the_original_load(tmp_path: Path) -> None:
    root = Path(ORIGINAL).resolve()
    assert (root / "plugins" / "local").is_dir(), f"{root} has no plugins/local"
    results = check_tree(root, tmp_path)
    for lang, (ok, total) in summary(results).items():
        print(f"{lang}: {ok} of {total} runner-side tools with a descriptor load")
    failures = [r for r in results if not r.ok]
    for r in failures:
        print(f"FAIL {r.language} {r.tool}: {r.message}")
    # Every tool that does not load lacks a module that is not installed here; none fails for a
    # module that its tree's plugins/local/lib or autoexec's own libraries hold (a path error).
    dirs = [d for d in [root / "plugins" / "local" / "lib", *CORE_LIB_DIRS] if d.is_dir()]
    shipped = {(p.suffix, p.stem) for d in dirs for p in d.iterdir()}
    for r in failures:
        assert r.message.startswith(("Perl module", "Python module")), f"{r.tool}: {r.message}"
        module = r.message.split()[-1]
        ext, name = (".pm", module.split("::")[0]) if r.language == "perl" else (".py", module.split(".")[0])
        assert (ext, name) not in shipped, f"{r.tool}: {r.message}, which is shipped but was not found"
