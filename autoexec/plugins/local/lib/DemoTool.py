"""Shared body of the ``demo/local`` and ``demo/localremote`` tools: echo every option (secrets
masked) and write one output of every output type, so runner tests can check the whole pipeline."""
from __future__ import annotations

import json
import os
import re
import sys

import AutoExecUtils

_SECRET_NAME = re.compile(r"pass|pwd|account|secret|token", re.IGNORECASE)


def _describe(name: str, value: str) -> str:
    if _SECRET_NAME.search(name):
        return "<set, {} chars>".format(len(value)) if value else "<empty>"
    if name in ("tjson", "tnode", "tmultiselect", "tcheckbox"):
        try:
            return "{} (JSON {})".format(value, type(json.loads(value)).__name__)
        except ValueError:
            return "{} (not JSON)".format(value)
    if name == "ttextarea":
        return repr(AutoExecUtils.unescapeTextarea(value))
    if name in ("tfile", "tfilepath"):
        paths = [p for p in value.split(",") if p]
        return ", ".join("{} ({})".format(p, "exists" if os.path.exists(p) else "missing") for p in paths)
    return value


def run(tool: str, on_target: bool) -> int:
    opts, args = AutoExecUtils.parseOptions()
    print("INFO: {} received {} option(s) and {} argument(s).".format(tool, len(opts), len(args)))
    for name, value in opts.items():
        print("INFO: option {} = {}".format(name, _describe(name, value)))
    for index, value in enumerate(args):
        print("INFO: argument {} = {}".format(index, value))
    if on_target:
        node = AutoExecUtils.getMyNode() or {}
        if not (node.get("password") or os.getenv("AUTOEXEC_NODE_PASSWORD")):  # as the original: AUTOEXEC_NODE has it
            print("WARN: node {}:{} has no password.".format(node.get("host"), node.get("protocolPort")))
        shown = {k: v for k, v in node.items() if k != "password"}
        print("INFO: target node {}".format(json.dumps(shown, ensure_ascii=False, sort_keys=True)))
        print("INFO: NODE_HOST={} NODE_PORT={} NODE_NAME={}".format(
            os.getenv("NODE_HOST", ""), os.getenv("NODE_PORT", ""), os.getenv("NODE_NAME", "")))

    out_dir = os.getenv("OUTPUT_DIR") or os.path.dirname(os.getenv("OUTPUT_PATH", "")) or "."
    os.makedirs(out_dir, exist_ok=True)
    demo_file = os.path.join(out_dir, "{}-demo.txt".format(os.getenv("OPERATION_ID") or tool))
    with open(demo_file, "w", encoding="utf-8") as fh:
        fh.write("demo file written by {}\n".format(tool))
    rel_file = os.path.relpath(demo_file)

    tinput = opts.get("tinput", "")
    try:
        tjson = json.loads(opts.get("tjson") or "null")
    except ValueError:
        tjson = opts.get("tjson")
    AutoExecUtils.saveOutput({
        "outtext": "{}: {}".format(tool, tinput),
        "outfile": rel_file,
        "outjsonlist": [tinput, opts.get("tselect", ""), *args],
        "outjsonobj": {"tinput": tinput, "tjson": tjson, "args": args},
        "outcsv": "name,value\ntinput,{}\n".format(tinput),
        "outpassword": "demo-output-password",
        "outfilepath": rel_file,
    })
    code = opts.get("texitcode", "0") or "0"
    if code != "0":
        print("ERROR: {} exits with {} as asked by --texitcode.".format(tool, code))
    return int(code) if code.lstrip("-").isdigit() else 1


if __name__ == "__main__":
    sys.exit(run(os.path.basename(sys.argv[0]), False))
