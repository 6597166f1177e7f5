from __future__ import annotations

import os

import pytest

from autoexec.ops.condition import Binary, ConditionError, Unary, Var, evaluate, parse

ENV = {"WAL_LEVEL": "replica", "N": "10", "V": "1.5", "VER": "1.2.3", "NAME": "web01", "EMPTY": "",
       "ZERO": "0", "PATHV": "/tmp"}


def ev(expr: str, env: dict | None = None) -> bool:
    return evaluate(expr, (ENV if env is None else env).get)


@pytest.mark.parametrize("expr,expected", [
    ('$WAL_LEVEL == "replica"', True),
    ('${WAL_LEVEL} = "replica"', True),
    ('$WAL_LEVEL != "replica"', False),
    ("$N > 9", True), ("$N >= 10", True), ("$N < 10", False), ("$N <= 10", True),
    ('$N == "10"', True),
    ("$V > 1", True), ("$V == 1.5", True),
    ('$VER == "1.2.3"', True),
    ('$NAME contains "eb0"', True), ('$NAME contains "x"', False),
    ('$NAME startswith "web"', True), ('$NAME startswith "eb"', False),
    ('$NAME CONTAINS "web" AND $N == 10', True),
    ("$N + 5 == 15", True), ("$N - 4 == 6", True), ("$N * 2 == 20", True), ("$N / 4 == 2.5", True),
    ("$N + 5 + 5 == 20", True),
    ("$N == -10", False), ("0 - 10 == -10", True),
    ('"$N" == 10', True),
    ('"x$NAME" == "xweb01"', True),
    ("'${NAME}-$N' == 'web01-10'", True),
    ('$UNDEFINED == "$UNDEFINED"', True),
    ('$N == "abc"', False),
    ("1", True), ("$ZERO", False), ("$EMPTY", False),
])
def test_operators_and_coercions(expr, expected):
    assert ev(expr) is expected


def test_binary_ops_are_one_left_assoc_level():
    assert parse("1 + 2 == 3") == Binary("==", Binary("+", parse("1"), parse("2"), 2), parse("3"), 6)
    assert ev("1 + 2 == 3")
    assert ev("2 == 2 == 1")  # (2 == 2) == 1, i.e. True == 1, as Python compares them
    assert ev("10 - 2 - 3 == 5")


def test_precedence_and_binds_tighter_than_or():
    assert ev("1 == 1 or 1 == 2 and 1 == 2")
    assert not ev("(1 == 1 or 1 == 2) and 1 == 2")
    tree = parse("$a or $b and $c")
    assert isinstance(tree, Binary) and tree.op == "or" and tree.right.op == "and"


def test_not_is_looser_than_comparison_and_chains():
    assert ev('not $NAME == "db"')
    assert not ev("not not $ZERO")
    assert ev("NOT 1 == 2 and 1 == 1")
    tree = parse("not $a == 1")
    assert isinstance(tree, Unary) and tree.op == "not" and tree.operand.op == "=="


def test_multi_and_or_chains_do_not_crash():
    assert ev("1 == 1 and 2 == 2 and 3 == 3")
    assert ev("1 == 2 or 2 == 3 or 3 == 3")


def test_file_tests(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("x")
    link = tmp_path / "ln"
    os.symlink(f, link)
    env = {"F": str(f), "D": str(tmp_path), "L": str(link), "X": str(tmp_path / "nope")}
    assert ev("-f $F and -d $D and -e $F and -l $L", env)
    assert not ev("-f $D or -d $F or -e $X or -l $F", env)
    assert ev(f'-f "{f}"', env)
    assert ev('-d "/tm" + "p"', env)  # file tests apply to a whole binary expression
    assert ev("not -e $X", env)


def test_documented_example(tmp_path):
    expr = f'$WAL_LEVEL == "replica" and (-f "{tmp_path}/test.txt" or -d "{tmp_path}")'
    assert ev(expr)
    assert not ev(expr, {"WAL_LEVEL": "minimal"})


def test_lookup_order_is_callers_business():
    node_env, runner_env = {"A": "node"}, {"A": "runner", "B": "runner"}

    def lookup(name):
        return node_env.get(name, runner_env.get(name))

    assert evaluate('$A == "node" and $B == "runner"', lookup)


def test_variables_never_reparse_as_syntax():
    assert ev('$X == "a or 1 == 1"', {"X": "a or 1 == 1"})
    assert not ev('$X == "1"', {"X": '1" or "1'})


def test_quoted_strings_keep_backslashes_and_other_quote():
    assert ev(r"""$X == 'a\b"c'""", {"X": 'a\\b"c'})
    assert ev(r"""'a\b' + '"' == "a\b" + '"'""")


def test_parse_is_cached():
    assert parse("$a == 1") is parse("$a == 1")


def test_var_node():
    assert parse("${ x }") == Var("x")


@pytest.mark.parametrize("expr,pos,fragment", [
    ("", 0, "empty condition"),
    ("   ", 0, "empty condition"),
    ('FOO == "x"', 0, 'variable must start with "$"'),
    ('$A == bar', 6, "variable must start with"),
    ("$A ==", 5, "found end of expression"),
    ("$A == 1 )", 8, "expected an operator"),
    ("($A == 1", 8, "expected ')'"),
    ('$A == "abc', 6, "unterminated string"),
    ("$A == 1 $B", 8, "expected an operator"),
    ("$A ? 1", 3, "unexpected character '?'"),
    ("and $A", 0, "expected a number"),
    ("$A == -f $B", 6, "expected a number"),
])
def test_syntax_errors_name_expression_and_position(expr, pos, fragment):
    with pytest.raises(ConditionError) as info:
        evaluate(expr, {}.get)
    msg = str(info.value)
    assert info.value.pos == pos
    assert f"position {pos}" in msg and fragment in msg and "\n" not in msg
    assert msg.startswith("Condition syntax error")
    assert f"[{expr}]" in msg


def test_evaluation_errors_are_condition_errors():
    with pytest.raises(ConditionError, match="evaluation error at position 3"):
        ev("$N / 0")
    with pytest.raises(ConditionError, match="evaluation error"):
        ev('1 - "x"')


def test_multiline_expression_message_is_one_line():
    with pytest.raises(ConditionError) as info:
        ev("$A ==\n")
    assert "\n" not in str(info.value)


def test_condition_error_is_value_error():
    assert issubclass(ConditionError, ValueError)
