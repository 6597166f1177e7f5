"""What one job invocation was asked to do: its ids, params, options and paths.

Built once by the job loader and never changed afterwards (a frozen dataclass: assigning a field
raises, and mypy refuses it), so every module below the loader can read it without asking who
else might have changed it. What changes while the job runs lives elsewhere: its variables in
:class:`autoexec.job.env.JobEnv`, its flags in :class:`autoexec.job.control.JobControl`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, Callable, TypeVar

from autoexec.conf.config import Config
from autoexec.jobdir.layout import JobDir
from autoexec.models.params import Params


def _plain(value: str) -> str:
    return value


@dataclass(frozen=True, eq=False)
class JobSpec:
    job_id: str
    jobdir: JobDir
    params: Params
    config: Config
    exec_user: str = "anonymous"
    force: bool = False
    runner_id: int = 1
    phase_filter: frozenset[str] | None = None
    group_filter: frozenset[int] | None = None
    node_filter: frozenset[int] | None = None
    round_filter: int | None = None
    """One grayScale round only (a part of a Prefect-coordinated job): the coordinator, not the
    console, is the barrier between runners, so no informRoundEnded wait."""
    max_parallel: int = 64
    no_fire_next: bool = False
    dev_mode: bool = False
    decrypt: Callable[[str], str] = _plain
    """Decrypts a ``{RC4}``/``{ENCRYPTED}`` value with the runner's key (``config.password_key``)."""


K = TypeVar("K", int, str)


def frozen(ids: AbstractSet[K] | None) -> frozenset[K] | None:
    """A filter as the spec keeps it (``None``: no filter)."""
    return None if ids is None else frozenset(ids)
