"""The deployment-facing signature of the job flow, and how its parameters become a job request."""
from __future__ import annotations

import dataclasses
import inspect

import pytest
from prefect.utilities.callables import parameter_schema

from autoexec.flows.job_flow import job_flow
from autoexec.load.loader import CLI_ONLY_FIELDS, FLOW_ONLY_PARAMETERS, JobRequest
from autoexec.models.params import JobInputError


def test_ids_typed_on_the_command_line_are_accepted() -> None:
    """``prefect deployment run -p job_id=9001`` sends an integer; the server validates it against
    this schema before any worker sees the run."""
    props = parameter_schema(job_flow).model_dump()["properties"]
    for name in ("job_id", "phase_groups", "node_ids"):
        assert {"type": "integer"} in props[name]["anyOf"], name


def test_every_flow_parameter_is_a_request_field_of_the_same_name_or_listed_as_flow_only() -> None:
    """The flow's flat parameters and :class:`JobRequest` are one vocabulary: a name means the same
    in both, and :meth:`JobRequest.from_flow_parameters` is the one place that turns one into the other."""
    flow_params = set(inspect.signature(job_flow.fn).parameters)
    fields = {f.name for f in dataclasses.fields(JobRequest)}
    unlisted = sorted(flow_params - fields - set(FLOW_ONLY_PARAMETERS))
    assert not unlisted, (f"job_flow parameter(s) {unlisted} are no JobRequest field: add a field of the same name "
                          f"to JobRequest (parsed in JobRequest.from_flow_parameters), or list the name in "
                          f"FLOW_ONLY_PARAMETERS with what the flow does with it")
    missing = sorted(fields - flow_params - set(CLI_ONLY_FIELDS))
    assert not missing, (f"JobRequest field(s) {missing} have no job_flow parameter: add the parameter (same name, "
                         f"described in the flow's docstring and docs/deployments.md), or list the field in "
                         f"CLI_ONLY_FIELDS with the reason deployments do not take it")
    stale = sorted((set(FLOW_ONLY_PARAMETERS) - flow_params) | (set(FLOW_ONLY_PARAMETERS) & fields)
                   | (set(CLI_ONLY_FIELDS) - fields) | (set(CLI_ONLY_FIELDS) & flow_params))
    assert not stale, f"{stale}: listed in FLOW_ONLY_PARAMETERS/CLI_ONLY_FIELDS but that is no longer true: unlist"


def test_flow_parameters_become_the_request_in_one_place() -> None:
    defaults = {name: p.default for name, p in inspect.signature(job_flow.fn).parameters.items()
                if p.default is not inspect.Parameter.empty}
    req = JobRequest.from_flow_parameters({**defaults, "job_id": 9001, "node_ids": 101, "phase_groups": "1, 2",
                                           "phases": "a, b", "runner_id": 3, "round_no": "2",
                                           "pass_through_env": {"k": "v"}, "params": {"runFlow": []},
                                           "nodes": "{}\n", "after_runs": ["x"]})
    assert req.job_id == "9001" and req.node_ids == {101} and req.phase_groups == {1, 2}
    assert req.phases == {"a", "b"} and req.round_no == 2
    assert req.pass_through_env == {"k": "v", "runnerId": 3}
    assert req.params == {"runFlow": []} and req.nodes == "{}\n" and req.dev_mode is True
    plain = JobRequest.from_flow_parameters({**defaults, "job_id": "7"})
    assert plain.node_ids is None and plain.phase_groups is None and plain.phases is None
    assert plain.round_no is None and plain.pass_through_env == {}
    with pytest.raises(JobInputError, match="--nodes: 'x' must be"):
        JobRequest.from_flow_parameters({"job_id": "7", "node_ids": "x"})
    # groupNo counts from 0 (a coordinator sends phase_groups="0" for a job's first group)
    assert JobRequest.from_flow_parameters({"job_id": "7", "phase_groups": 0}).phase_groups == {0}
    with pytest.raises(JobInputError, match="--phasegroups: '-1': ids must be 0 or more"):
        JobRequest.from_flow_parameters({"job_id": "7", "phase_groups": "-1"})
    with pytest.raises(TypeError, match="job flow parameter.*surprise.*FLOW_ONLY_PARAMETERS"):
        JobRequest.from_flow_parameters({"job_id": "7", "surprise": 1})
