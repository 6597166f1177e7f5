from __future__ import annotations

import pytest

from autoexec.engine.groups import round_sizes, runner_round
from autoexec.job.runtime import parallel_count


@pytest.mark.parametrize("nodes, rounds, expected", [(10, 3, [4, 3, 3]), (5, 2, [3, 2]), (3, 0, [1, 1, 1]),
                                                     (2, 5, [1, 1]), (0, 2, [0])])
def test_round_sizes_follow_the_original_partition(nodes: int, rounds: int, expected: list[int]) -> None:
    assert round_sizes(nodes, rounds) == expected


@pytest.mark.parametrize("exec_round, rounds, expected", [(None, 3, 1), ("first", 3, 1), ("last", 3, 3),
                                                          ("middle", 3, 2), ("middle", 2, 1), ("middle", 1, 1),
                                                          ("middle", 4, 2), ("last", 1, 1)])
def test_runner_phase_runs_in_exactly_one_round(exec_round: str | None, rounds: int, expected: int) -> None:
    assert runner_round(exec_round, rounds) == expected


@pytest.mark.parametrize("nodes, round_count, cap, expected", [(10, 3, 64, 4), (100, 64, 64, 2), (5, 0, 64, 5),
                                                               (500, 0, 64, 64), (5, None, 2, 2), (1, 1, 64, 1)])
def test_parallelism_rule_with_global_cap(nodes: int, round_count: int | None, cap: int, expected: int) -> None:
    assert parallel_count(nodes, round_count, cap) == expected
