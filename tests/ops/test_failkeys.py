from __future__ import annotations

import pytest

from autoexec.ops.failkeys import FailKeys, FailKeysError


def run_op(keys: FailKeys, op_id: str, lines: list[str]) -> tuple[bool, list[str]]:
    keys.start_op(op_id)
    notices = [n for n in (keys.feed(line) for line in lines) if n]
    return keys.finish_op(), notices


def test_or_mode_any_pattern_fails_the_op_that_printed_it():
    keys = FailKeys(["ORA-\\d+", "Exception"])
    failed, notices = run_op(keys, "op1", ["ok\n", "ORA-00942: table missing\n", "done"])
    assert failed
    assert notices == ["ERROR: Fail pattern ORA-\\d+ matched for pre line."]


def test_later_clean_op_is_not_failed():
    keys = FailKeys(["ERROR"])
    assert run_op(keys, "op1", ["ERROR here"])[0]
    assert run_op(keys, "op2", ["all good"]) == (False, [])
    assert run_op(keys, "op3", ["again ERROR"])[0]


def test_and_mode_requires_all_patterns_on_the_same_line():
    keys = FailKeys(["disk", "full"], operator="AND")
    assert run_op(keys, "a", ["disk ok", "memory full"]) == (False, [])
    failed, notices = run_op(keys, "b", ["disk is full"])
    assert failed
    assert notices == ["ERROR: Fail pattern disk and full matched for pre line."]


def test_exclude_regex_skips_lines():
    keys = FailKeys(["error"], exclude="^WARN")
    assert run_op(keys, "a", ["WARN: error ignored"]) == (False, [])
    assert run_op(keys, "a", ["fatal error"])[0]


def test_fail_ignore_installer_only_warns():
    keys = FailKeys(["boom"], fail_ignore=True)
    failed, notices = run_op(keys, "a", ["boom"])
    assert not failed
    assert notices == ["WARN: Fail pattern boom matched for pre line."]


def test_no_patterns_never_match_even_in_and_mode():
    keys = FailKeys([], operator="and")
    assert run_op(keys, "a", ["anything"]) == (False, [])
    assert FailKeys(["", ""]).patterns == ()


def test_lines_outside_an_op_are_not_checked():
    keys = FailKeys(["x"])
    assert keys.feed("x") is None
    assert keys.current_op is None
    keys.start_op("op")
    assert keys.current_op == "op"
    assert keys.finish_op() is False and keys.current_op is None


def test_match_is_pure_and_strips_newline():
    keys = FailKeys(["end$"])
    assert keys.match("the end\r\n") == "end$"
    assert keys.match("the end") == "end$"
    keys.start_op("a")
    assert keys.finish_op() is False


def test_every_matching_line_gets_a_notice():
    keys = FailKeys(["bad"])
    failed, notices = run_op(keys, "a", ["bad 1", "good", "bad 2"])
    assert failed and len(notices) == 2


@pytest.mark.parametrize("kwargs,fragment", [
    ({"patterns": ["("]}, "Invalid fail pattern regex '('"),
    ({"patterns": ["ok"], "exclude": "[z"}, "Invalid exclude regex '[z'"),
    ({"patterns": ["ok"], "operator": "xor"}, "Invalid failkeys operator 'xor'"),
])
def test_bad_configuration_raises_clear_value_error(kwargs, fragment):
    with pytest.raises(FailKeysError) as info:
        FailKeys(**kwargs)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_default_operator_is_or_and_empty_operator_allowed():
    assert FailKeys(["a"]).operator == "or"
    assert FailKeys(["a"], operator="").operator == "or"
