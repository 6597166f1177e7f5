"""The job request's own fields (CLI flags, deployment parameters), checked like the files are.

The operator name becomes part of history-log file names and tools' environment; phase names
given to ``--phases`` are compared with params.json; ``--passthroughenv`` is echoed to the console
and exported to tools; ``--sqlfiles`` is exported as ``_SQL_FILES``. So all of them must be valid
text without NUL, and the operator a short name without a path separator.
"""
from __future__ import annotations

from typing import Any, Protocol

from autoexec.models.params import JobInputError
from autoexec.models.text import MAX_NAME_BYTES, TextProblem, check_tree, text_problem

MAX_JOB_ID = 64


class _Request(Protocol):
    job_id: str
    exec_user: str
    pass_through_env: dict[str, Any]
    phases: set[str] | None
    sql_files: str


def check_request(req: _Request) -> None:
    """Raise one :class:`JobInputError` line naming the flag and the problem."""
    if len(req.job_id) > MAX_JOB_ID:
        raise JobInputError(f"--jobid: {len(req.job_id)} characters; at most {MAX_JOB_ID} are allowed")
    user = req.exec_user
    problem = text_problem(user)
    if problem is None and ("/" in user or any(ord(c) < 32 for c in user) or user in (".", "..")):
        problem = "must not contain '/' or control characters (it becomes part of file names)"
    if problem is None and len(user.encode("utf-8")) > MAX_NAME_BYTES:
        problem = f"is longer than {MAX_NAME_BYTES} bytes (it becomes part of file names)"
    if problem is not None:
        raise JobInputError(f"--execuser: {problem}")
    for name in sorted(req.phases or ()):
        problem = text_problem(name)
        if problem is not None:
            raise JobInputError(f"--phases: a phase name {problem}")
    try:
        check_tree(req.pass_through_env)
    except TextProblem as exc:
        raise JobInputError(f"--passthroughenv: field {exc.where or '(top level)'}: {exc.problem}") from None
    problem = text_problem(req.sql_files or "")
    if problem is not None:
        raise JobInputError(f"--sqlfiles: {problem}")
