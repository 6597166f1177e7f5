"""Helpers for tools run on the runner (§18.2): option parsing, outputs, node info.

Tools import this by name (``PYTHONPATH`` holds ``plugins/local/lib``), so it only uses the
standard library and keeps the camelCase names existing neatlogic tools call.
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
import tempfile
from typing import Any


def parseOptions(argv: list[str] | None = None) -> tuple[dict[str, str], list[str]]:
    """``--name value`` / ``-x value`` / ``--name=value`` options, then free arguments.

    The runner always renders a value after an option, so the token after an option is its value
    even when it starts with ``-``. The first bare token (or ``--``) ends the options.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    opts: dict[str, str] = {}
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            i += 1
            break
        if not token.startswith("-") or token == "-":
            break
        name = token.lstrip("-")
        if "=" in name and token.startswith("--"):
            name, value = name.split("=", 1)
            i += 1
        else:
            value = args[i + 1] if i + 1 < len(args) else ""
            i += 2
        opts[name] = value
    return opts, args[i:]


def unescapeTextarea(value: str) -> str:
    """The runner turns textarea newlines into the two characters ``\\n`` (§10.4); undo that."""
    return value.replace("\\n", "\n")


def isTrue(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "on")


def _atomic_json(path: str, data: Any) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".output.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=4, ensure_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def saveOutput(outputData: dict[str, Any]) -> None:
    """Write the op's outputs to ``$OUTPUT_PATH`` (atomically, so the runner never reads half)."""
    path = os.getenv("OUTPUT_PATH")
    if not path:
        print("WARN: Could not save output file, because of environ OUTPUT_PATH not defined.")
        return
    _atomic_json(path, outputData)


def saveLiveData(liveData: Any) -> None:
    path = os.getenv("LIVEDATA_PATH")
    if not path:
        print("WARN: Could not save live data, because of environ LIVEDATA_PATH not defined.")
        return
    _atomic_json(path, liveData)


def loadNodeOutput() -> dict[str, Any]:
    """The node's accumulated outputs (``$NODE_OUTPUT_PATH``), read under the runner's shared lock."""
    path = os.getenv("NODE_OUTPUT_PATH")
    if not path or not os.path.exists(path):
        return {}
    with open(path, "r", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH)
        try:
            content = fh.read()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return json.loads(content) if content.strip() else {}


def getOpPreOutput() -> Any:
    """This op's output from a previous run on the same node, if any."""
    return loadNodeOutput().get(os.getenv("OPERATION_ID", ""))


def getMyNode() -> dict[str, Any] | None:
    text = os.getenv("AUTOEXEC_NODE", "")
    return json.loads(text) if text else None


def _nodes_file(phaseName: str | None, groupNo: int | str | None) -> str | None:
    path = os.getenv("AUTOEXEC_NODES_PATH")
    if not path:
        return None
    directory = os.path.dirname(path)
    candidates = []
    if phaseName is not None:
        candidates.append(os.path.join(directory, "nodes-ph-{}.json".format(phaseName)))
    if groupNo is not None:
        candidates.append(os.path.join(directory, "nodes-gp-{}.json".format(groupNo)))
    for candidate in candidates:
        if os.path.exists(candidate):
            return candidate
    return os.path.join(directory, "nodes.json") if candidates else path


def getNodesArray(phaseName: str | None = None, groupNo: int | str | None = None) -> list[dict[str, Any]]:
    """Nodes of the phase's nodes file, header line skipped, passwords dropped."""
    path = _nodes_file(phaseName, groupNo)
    if path is None or not os.path.exists(path):
        return []
    nodes = []
    with open(path, "r", encoding="utf-8") as fh:
        fh.readline()  # header: {"totalCount":..., "localRunnerId":..., "jobRunnerIds":[...]}
        for line in fh:
            if line.strip():
                node = json.loads(line)
                node.pop("password", None)
                nodes.append(node)
    return nodes


def getNodes(phaseName: str | None = None, groupNo: int | str | None = None) -> dict[Any, dict[str, Any]]:
    return {node.get("resourceId"): node for node in getNodesArray(phaseName, groupNo)}


def getNode(resourceId: int) -> dict[str, Any] | None:
    return getNodes().get(resourceId)
