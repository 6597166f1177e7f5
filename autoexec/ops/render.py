"""Option/argument processing and rendering into an argv LIST.

:func:`prepare_params` resolves a node's values (I/O injected, so this module stays pure);
:func:`render_argv`, :func:`masked_cmdline` and :func:`recorded_inputs` serve the three consumers.
The argv never goes through a shell, so values reach the tool byte for byte. How ``switch``,
``file`` and ``filepath`` options render: docs/design.md."""
from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autoexec.models.flags import is_true
from autoexec.ops.references import RefContext, resolve, to_text
from autoexec.conf.secrets import ENCRYPTED_PREFIXES

__all__ = ["PreparedParams", "prepare_params", "render_argv", "masked_cmdline", "recorded_inputs",
           "remote_filepath", "hide_textarea_secrets", "is_true", "ENCRYPTED_PREFIXES"]

SECRET_TYPES = frozenset({"password", "account"})
MASK = "******"
# Text after a secret marker up to the next escaped newline (the two characters ``\n``).
_TEXTAREA_SECRET = re.compile(r"(password\s*[=:]|pwd\s*[=:]|identified\s+by)(\s*)(.*?)(?=\\n|$)",
                              re.IGNORECASE | re.DOTALL)


@dataclass
class PreparedParams:
    """Processed values, all strings; ``types`` keeps the lower-cased desc type per option."""

    options: dict[str, str] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    arguments: list[tuple[str, str]] = field(default_factory=list)
    """``(type, value)`` in the order given."""
    file_paths: list[str] = field(default_factory=list)
    """Job-relative paths of ``filepath`` options/arguments (remote ops upload them)."""
    has_file: bool = False
    warnings: list[str] = field(default_factory=list)
    """Complete ``WARN: ...`` lines for the node log."""


def _is_secret(key: str, typ: str) -> bool:
    return typ in SECRET_TYPES or key.endswith("account")


def _decrypt(value: str, decrypt: Callable[[str], str], what: str, warnings: list[str]) -> str:
    if not value.startswith(ENCRYPTED_PREFIXES):
        return value
    try:
        return decrypt(value)
    except Exception:  # noqa: BLE001 - any failure of the injected decryptor is a warning, as in the original
        warnings.append(f"WARN: Decrypt password {what} failed.")
        return value


def _file_names(raw: Any, ctx: RefContext, fetch_file: Callable[[int | str], str | None] | None,
                what: str, warnings: list[str]) -> list[str]:
    value = raw
    if isinstance(value, str):
        text = resolve(value, ctx) if value.lstrip().startswith("${") else value
        if not text.strip():
            return []
        try:
            value = json.loads(text)
        except ValueError:
            warnings.append(f"WARN: Resolve file param {what} failed, value is not a JSON list: {text}")
            return []
    if not isinstance(value, list):
        value = [value]
    names: list[str] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, str)) or item == "":
            continue  # the console sends integer file ids; devmode may give local paths
        name = fetch_file(item) if fetch_file is not None else None
        if name:
            names.append(f"file/{name}")
    return names


def _job_relative(path: str, job_dir: str | None) -> str:
    if job_dir and posixpath.isabs(path):
        rel = posixpath.relpath(path, job_dir)
        if not rel.startswith(".."):
            return rel
    return path


def _process(key: str, typ: str, raw: Any, ctx: RefContext, out: PreparedParams, *,
             decrypt: Callable[[str], str], fetch_file: Callable[[int | str], str | None] | None,
             get_account: Callable[[str, str, str], str | None] | None, job_dir: str | None,
             what: str, is_arg: bool) -> str:
    if typ == "password":
        text = to_text(raw) if is_arg else resolve(raw, ctx)  # arguments: decrypt only, no reference resolution
        return _decrypt(text, decrypt, what, out.warnings)
    if typ == "file":
        names = _file_names(raw, ctx, fetch_file, what, out.warnings)
        out.has_file = out.has_file or bool(names)
        return json.dumps(names, ensure_ascii=False) if names else ""
    text = resolve(raw, ctx)
    if typ == "account" and text and get_account is not None:
        parts = text.split("/")
        try:
            password = get_account(parts[0], parts[1], parts[2])
            if password is not None:  # None: nobody to ask (no console), the value stays as written
                text = f"{parts[0]}/{_decrypt(password, decrypt, what, out.warnings)}"
        except Exception as exc:  # noqa: BLE001 - console/lookup errors leave the value as is , as in the original
            out.warnings.append(f"WARN: Get account for {what} failed: {exc}")
    elif typ == "filepath" and text:
        text = _job_relative(text, job_dir)
        out.file_paths.append(text)
    elif typ == "textarea":
        text = text.replace("\r\n", "\\n").replace("\n", "\\n")
    return text


def prepare_params(opt: Mapping[str, Any], desc: Mapping[str, str] | None,
                   args: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None, ctx: RefContext, *,
                   decrypt: Callable[[str], str],
                   fetch_file: Callable[[int | str], str | None] | None = None,
                   get_account: Callable[[str, str, str], str | None] | None = None,
                   job_dir: str | None = None, op_name: str = "") -> PreparedParams:
    """Process an op's ``opt``/``arg`` for one node. Raises ``UnresolvedReference``.

    ``decrypt`` gets the whole prefixed text (``{RC4}...``); ``fetch_file(id)`` downloads and
    links a console file into ``<job>/file/`` and returns its name (None = not available);
    ``get_account(username, accountId, protocol)`` returns that account's (possibly encrypted)
    password (``None``: nobody to ask, the value stays as written). ``args`` may be the list form ``[{"type", "value"}]`` or the legacy
    ``{"type", "values": [...]}``.
    """
    out = PreparedParams()
    desc = desc or {}
    common: dict[str, Any] = dict(decrypt=decrypt, fetch_file=fetch_file, get_account=get_account, job_dir=job_dir)
    for key, raw in opt.items():
        typ = str(desc.get(key) or "").lower()
        if not typ:
            out.warnings.append(f"WARN: Can not determine option {key} type by params desc, "
                                f"it is handled as text.")
            typ = "text"
        out.types[key] = typ
        out.options[key] = _process(key, typ, raw, ctx, out, what=f"option:{op_name}->{key}",
                                    is_arg=False, **common)
    if isinstance(args, Mapping):
        args = [{"type": args.get("type"), "value": v} for v in args.get("values") or []]
    for index, arg in enumerate(args or []):
        typ = str(arg.get("type") or "text").lower()
        value = _process("", typ, arg.get("value"), ctx, out, what=f"argument:{op_name}->{index}",
                         is_arg=True, **common)
        out.arguments.append((typ, value))
    return out


def remote_filepath(path: str) -> str:
    """Where a ``filepath`` value lives in a remote op's working dir; uploads must agree."""
    return "file/" + posixpath.basename(path.rstrip("/"))


def _display_value(typ: str, value: str, remote: bool) -> str:
    if typ == "file":
        return ",".join(json.loads(value))
    if typ == "filepath" and remote:
        return remote_filepath(value)
    return value


def _option_tokens(key: str, typ: str, value: str, interpreter: str) -> list[str]:
    if interpreter in ("cmd", "vbscript"):
        if typ == "switch":
            return [f"/{key}"] if is_true(value) else []
        quoted = f'"{value}"' if interpreter == "cmd" and re.search(r"\s", value) else value
        return [f"/{key}:{quoted}"]
    flag = f"-{key}" if len(key) == 1 or interpreter == "powershell" else f"--{key}"
    if typ == "switch":
        return [flag] if is_true(value) else []
    return [flag, value]


def _tokens(params: PreparedParams, interpreter: str | None, remote: bool,
            mask: Callable[[str, str, str], str] | None) -> list[str]:
    interp = (interpreter or "").lower()
    argv: list[str] = []
    for key, value in params.options.items():
        if value == "":
            continue
        typ = params.types.get(key, "text")
        shown = _display_value(typ, value, remote)
        argv += _option_tokens(key, typ, mask(key, typ, shown) if mask else shown, interp)
    for typ, value in params.arguments:
        if value == "":
            continue  # an empty positional would shift the tool's argument numbering silently
        shown = _display_value(typ, value, remote)
        shown = mask("", typ, shown) if mask else shown
        argv.append(f'"{shown}"' if interp == "cmd" and re.search(r"\s", shown) else shown)
    return argv


def render_argv(params: PreparedParams, *, interpreter: str | None = None, remote: bool = False) -> list[str]:
    """Options (``opt`` order) then arguments, ready to append to the command's argv."""
    return _tokens(params, interpreter, remote, None)


def hide_textarea_secrets(text: str) -> str:
    """``password=``/``password:``/``pwd=``/``pwd:``/``identified by`` values → ``**hidden**``."""
    return _TEXTAREA_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}**hidden**", text)


def _mask(key: str, typ: str, value: str) -> str:
    if _is_secret(key, typ):
        return MASK
    if typ == "textarea":
        return hide_textarea_secrets(value)
    return value


def masked_cmdline(params: PreparedParams, command: str = "", *, interpreter: str | None = None,
                   remote: bool = False) -> str:
    """Text for ``INFO: Execute -> <this>``: secrets masked, tokens shell-quoted for readability."""
    tokens = [shlex.quote(t) for t in _tokens(params, interpreter, remote, _mask)]
    return " ".join([command, *tokens] if command else tokens)


def recorded_inputs(params: PreparedParams) -> dict[str, Any]:
    """``{"options": {...}, "arguments": [...]}`` of ``input/<triple>.json``, secrets masked, textareas unescaped."""
    def record(key: str, typ: str, value: str) -> str:
        if _is_secret(key, typ):
            return MASK if value != "" else ""
        if typ == "textarea":
            return hide_textarea_secrets(value).replace("\\n", "\n")
        return value

    options = {k: record(k, params.types.get(k, "text"), v) for k, v in params.options.items()}
    arguments = [record("", t, v) for t, v in params.arguments]
    return {"options": options, "arguments": arguments}
