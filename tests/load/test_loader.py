"""autoexec.load.loader: the narrowing lists shared by the CLI and the deployment flow."""
from __future__ import annotations

import pytest

from autoexec.load.loader import parse_id_list, parse_name_list
from autoexec.models.params import JobInputError


@pytest.mark.parametrize("text, expected", [
    ("", None), (None, None), (" , ", None), ("build", {"build"}), ("build, deploy ,", {"build", "deploy"}),
])
def test_phase_names_are_trimmed_and_empty_means_all(text: str | None, expected: set[str] | None) -> None:
    assert parse_name_list(text) == expected


def test_id_lists_take_spaces_and_name_the_flag_when_wrong() -> None:
    assert parse_id_list("1, 2,", "nodes") == {1, 2}
    assert parse_id_list("", "nodes") is None
    with pytest.raises(JobInputError, match="--phasegroups: 'a' must be"):
        parse_id_list("a", "phasegroups")
