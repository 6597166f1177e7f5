# -*- coding: utf-8 -*-
"""Helpers for tools run on target hosts (§18.2). Standard library only, and written to run on the
old Pythons found on targets (no f-strings or annotations). Outputs go to ``output.json`` next to the
running tool, where the runner downloads them; ``$OUTPUT_PATH`` wins when set (local testing)."""
import json
import os
import sys


def parseOptions(argv=None):
    """``--name value`` / ``-x value`` options, then free arguments (first bare token or ``--``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    opts = {}
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


def unescapeTextarea(value):
    return value.replace("\\n", "\n")


def toolDir():
    return os.path.dirname(os.path.realpath(sys.argv[0] or "."))


def outputPath():
    return os.environ.get("OUTPUT_PATH") or os.path.join(toolDir(), "output.json")


def saveOutput(outputData):
    path = outputPath()
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(json.dumps(outputData, indent=4, ensure_ascii=False) if sys.version_info[0] >= 3
                 else json.dumps(outputData, indent=4))
    os.rename(tmp, path)


def getMyNode():
    text = os.environ.get("AUTOEXEC_NODE", "")
    return json.loads(text) if text else None
