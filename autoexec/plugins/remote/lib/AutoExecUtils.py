# -*- coding: utf-8 -*-
"""The library target-side Python tools import as ``AutoExecUtils`` (uploaded as ``<run dir>/lib``).

Standard library only, and written for the old Pythons found on targets (2.7 included: no
f-strings, no annotations). Outputs go to ``output.json`` in the running tool's directory, where
the runner fetches them (``$OUTPUT_PATH`` wins when set, e.g. for a local try-out). The original
wrote them one directory higher, where they were never fetched.
"""
import json
import os
import re
import sys


def parseOptions(argv=None):
    """``--name value`` / ``-x value`` options, then free arguments (first bare token or ``--``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    opts = {}
    i = 0
    while i < len(args):
        token = args[i]
        if token == '--':
            i += 1
            break
        if not token.startswith('-') or token == '-':
            break
        name = token.lstrip('-')
        if '=' in name and token.startswith('--'):
            name, value = name.split('=', 1)
            i += 1
        else:
            value = args[i + 1] if i + 1 < len(args) else ''
            i += 2
        opts[name] = value
    return opts, args[i:]


def unescapeTextarea(value):
    return value.replace('\\n', '\n')


def toolDir():
    return os.path.dirname(os.path.realpath(sys.argv[0] or '.'))


def outputPath():
    return os.environ.get('OUTPUT_PATH') or os.path.join(toolDir(), 'output.json')


_SECRET_OPTION = re.compile(r'^-+\w*(pass|pwd|account)\w*$', re.IGNORECASE)
_JSON_PASSWORD = re.compile(r'("password":\s*)".*?"', re.IGNORECASE)


def hidePwdInCmdLine():
    """``sys.argv`` with the values of password/account options and JSON ``"password"`` fields
    replaced by ``******``, for printing the command line. (Python cannot rewrite what ``ps`` shows
    without a C extension; the runner never puts node passwords on a command line anyway.)"""
    masked = [sys.argv[0]] if sys.argv else []
    args = sys.argv[1:]
    i = 0
    while i < len(args):
        arg = args[i]
        if _SECRET_OPTION.match(arg) and i + 1 < len(args):
            masked.extend([arg, '******'])
            i += 2
            continue
        masked.append(_JSON_PASSWORD.sub(r'\1"******"', arg))
        i += 1
    return masked


def setEnv():
    """Point ``$OUTPUT_PATH`` at the tool's ``output.json`` (as the runner fetches it)."""
    os.environ['OUTPUT_PATH'] = outputPath()


def saveOutput(outputData):
    path = outputPath()
    print('INFO: Try save output to {}.'.format(path))
    tmp = path + '.tmp'
    if sys.version_info[0] >= 3:
        with open(tmp, 'w', encoding='utf-8') as fh:
            fh.write(json.dumps(outputData, indent=4, ensure_ascii=False))
    else:
        with open(tmp, 'w') as fh:
            fh.write(json.dumps(outputData, indent=4))
    os.rename(tmp, path)


def getMyNode():
    text = os.environ.get('AUTOEXEC_NODE', '')
    return json.loads(text) if text else None
