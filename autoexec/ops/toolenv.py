"""Where a runner-side tool finds its libraries and its configuration, as under the original.

``PYTHONPATH``/``PERL5LIB`` list the tool's own tree first, then the other plugin trees and
autoexec's tool library standing in for the original's core ``lib``, so each tree's tools keep
the library they were written against. Order in detail: docs/design.md."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from autoexec.conf.config import BUNDLED_PLUGINS, PACKAGE_DIR
from autoexec.models.optype import PluginTree

CORE_LIB_DIRS = (BUNDLED_PLUGINS / "local" / "lib", PACKAGE_DIR / "toollib")
"""autoexec's tool library: its ``AutoExecUtils``, and the core modules of the original's ``lib/``."""


def _existing(paths: Sequence[Path]) -> list[str]:
    return [str(p) for p in paths if p.is_dir()]


def owning_plugin_dir(path: Path, plugin_dirs: Sequence[Path]) -> Path | None:
    """The plugin dir (``<tree>/plugins``) a tool or tool directory was found in."""
    for base in plugin_dirs:
        if path.is_relative_to(base):
            return base
    return None


def _trees(own: Path | None, plugin_dirs: Sequence[Path]) -> list[Path]:
    """Plugin dirs that are trees (not the bundled tools), the tool's own first."""
    ordered = ([own] if own is not None else []) + [p for p in plugin_dirs if p != own]
    return [p for p in ordered if p != BUNDLED_PLUGINS]


def library_env(tool_dir: Path, plugin_dirs: Sequence[Path], env: dict[str, str]) -> dict[str, str]:
    """``PATH``, ``PYTHONPATH`` and ``PERL5LIB`` for a tool in ``tool_dir`` (a custom script's
    directory belongs to no tree: every tree's libraries then, in search order)."""
    own = owning_plugin_dir(tool_dir, plugin_dirs)
    trees = _trees(own, plugin_dirs)
    local_libs = _existing([t / PluginTree.LOCAL / "lib" for t in trees])
    core = _existing(list(CORE_LIB_DIRS))
    head = [str(tool_dir), str(tool_dir / "lib")]
    plib = _existing([t.parent / "plib" for t in trees])
    pllib = _existing([t / PluginTree.LOCAL / "pllib" / "lib" / "perl5" for t in trees])

    def joined(parts: list[str], inherited: str | None) -> str:
        out: list[str] = []
        for part in parts + ([inherited] if inherited else []):
            if part not in out:
                out.append(part)
        return os.pathsep.join(out)

    return {
        "PATH": joined([str(tool_dir / "lib"), *local_libs], env.get("PATH", os.defpath)),
        "PYTHONPATH": joined(head + local_libs + core + plib, env.get("PYTHONPATH")),
        "PERL5LIB": joined(head + local_libs + core + pllib, env.get("PERL5LIB")),
    }


def point_tree_configs(plugin_dirs: Sequence[Path], home: Path, config_path: Path,
                       warn: Callable[[str], None]) -> None:
    """Make the tools of every tree read autoexec's ``config.ini``.

    A tool finds its configuration at ``<real path of its tree>/conf/config.ini``. For
    ``$AUTOEXEC_HOME/plugins`` that is autoexec's own file. For a tree kept elsewhere (named by
    ``plugins.path``, or a symlinked ``$AUTOEXEC_HOME/plugins``) a missing file becomes a symlink to
    autoexec's; an existing different file (an old installation's) is left alone and named in a
    warning, since its tools would read another console's settings. Also creates
    ``$AUTOEXEC_HOME/tmp``, the scratch directory tools use (``$AUTOEXEC_HOME/tmp``)."""
    try:
        (home / "tmp").mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    real_home = home.resolve()
    target = config_path.absolute()
    for plugin_dir in _trees(None, plugin_dirs):
        if not plugin_dir.is_dir():
            continue
        root = plugin_dir.resolve().parent
        if root == real_home:
            continue
        conf = root / "conf" / "config.ini"
        if os.path.lexists(conf):
            try:
                if conf.exists() and config_path.exists() and os.path.samefile(conf, config_path):
                    continue
                if conf.is_symlink() and Path(os.readlink(conf)) == target:
                    continue  # ours, autoexec's own file not written yet
            except OSError:
                pass
            warn(f"WARN: tools of plugin tree {root} read {conf}, not autoexec's {config_path}: replace it by a "
                 f"symlink to {config_path} to have them use autoexec's console settings.")
            continue
        try:
            conf.parent.mkdir(exist_ok=True)
            os.symlink(target, conf)
        except OSError as exc:
            warn(f"WARN: tools of plugin tree {root} find no conf/config.ini and autoexec cannot link its own "
                 f"there ({exc.strerror or exc}): create {conf} as a symlink to {config_path}.")

