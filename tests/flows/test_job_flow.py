"""The deployment-facing signature of the job flow."""
from __future__ import annotations

from prefect.utilities.callables import parameter_schema

from autoexec.flows.job_flow import job_flow


def test_ids_typed_on_the_command_line_are_accepted() -> None:
    """``prefect deployment run -p job_id=9001`` sends an integer; the server validates it against
    this schema before any worker sees the run."""
    props = parameter_schema(job_flow).model_dump()["properties"]
    for name in ("job_id", "phase_groups", "node_ids"):
        assert {"type": "integer"} in props[name]["anyOf"], name
