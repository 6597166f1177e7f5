from __future__ import annotations

import pytest

from autoexec.ops.references import RefContext, UnresolvedReference, references_in, resolve, to_text


def ctx(**kw):
    kw.setdefault("environ", {})
    return RefContext(**kw)


def test_plain_text_untouched():
    assert resolve("no refs here", ctx()) == "no refs here"


def test_none_and_non_strings_are_text():
    assert resolve(None, ctx()) == ""
    assert resolve(3, ctx()) == "3"
    assert resolve(True, ctx()) == "true"
    assert resolve({"a": "中文", "b": [1, 2]}, ctx()) == '{"a": "中文", "b": [1, 2]}'
    assert to_text(["x"]) == '["x"]'


def test_lookup_order_opt_global_nodeenv_environ():
    full = ctx(opt={"N": "opt"}, global_opt={"N": "g", "G": "g"}, node_env={"N": "n", "G": "n", "E": "n"},
               environ={"N": "env", "G": "env", "E": "env", "R": "env"})
    assert resolve("${N}|${G}|${E}|${R}", full) == "opt|g|n|env"


def test_dollar_word_uses_job_names_only_not_runner_environment():
    c = ctx(opt={"NAME": "web"}, node_env={"NODE_HOST": "10.0.0.1"}, environ={"HOME": "/root", "PATH": "/bin"})
    script = 'echo $NAME on $NODE_HOST; cd $HOME; echo "$PATH" $1 $i'
    assert resolve(script, c) == 'echo web on 10.0.0.1; cd $HOME; echo "$PATH" $1 $i'


def test_braced_form_reaches_runner_environment():
    assert resolve("${HOME}/x", ctx(environ={"HOME": "/root"})) == "/root/x"


def test_braces_allow_surrounding_spaces():
    assert resolve("${ a }-${a }", ctx(opt={"a": "1"})) == "1-1"


def test_unknown_names_kept_verbatim():
    assert resolve("$UNKNOWN ${UNKNOWN} ${a.b} ${}", ctx()) == "$UNKNOWN ${UNKNOWN} ${a.b} ${}"


def test_non_string_values_json_encoded_without_ascii_escape():
    c = ctx(opt={"o": {"k": "值"}, "n": 5, "b": False})
    assert resolve("${o} $n ${b}", c) == '{"k": "值"} 5 false'


def test_values_are_copied_verbatim_backslashes_dollars_quotes():
    value = r"C:\new\table \1 \g<0> $HOME `id` 'q' \"dq\""
    assert resolve("x=${v};y=$v", ctx(opt={"v": value})) == f"x={value};y={value}"


def test_substituted_values_are_not_rescanned():
    c = ctx(opt={"a": "${b}", "b": "secret"})
    assert resolve("${a}", c) == "${b}"


def test_dollar_word_boundary():
    assert resolve("$a.txt $ab $a_", ctx(opt={"a": "X"})) == "X.txt $ab $a_"


def test_three_part_output_reference_node_first_then_runner():
    c = ctx(node_output={"demo/op_1": {"out": "node"}},
            runner_output={"demo/op_1": {"out": "runner", "other": "r2"}, "op2": {"k": [1]}})
    assert resolve("${phase1.demo/op_1.out}", c) == "node"
    assert resolve("${phase1.demo/op_1.other}", c) == "r2"
    assert resolve("${p.op2.k}", c) == "[1]"


def test_op_id_containing_dots():
    c = ctx(node_output={"a.b_1": {"k": "v"}})
    assert resolve("${ph.a.b_1.k}", c) == "v"


def test_two_part_form_when_op_id_present():
    c = ctx(node_output={"op_1": {"out": "x"}}, runner_output={"op_r": {"y": 2}})
    assert resolve("${op_1.out}-${op_r.y}", c) == "x-2"


def test_two_part_form_for_unknown_op_is_verbatim():
    assert resolve("${host.name}", ctx(node_output={"op_1": {}})) == "${host.name}"


def test_two_part_form_known_op_missing_key_raises():
    with pytest.raises(UnresolvedReference, match=r"Can not resolve param \$\{op_1\.nope\}"):
        resolve("${op_1.nope}", ctx(node_output={"op_1": {"out": "x"}}))


def test_unresolvable_output_reference_raises_with_name():
    with pytest.raises(UnresolvedReference) as info:
        resolve("a ${ph.op.key} b", ctx())
    assert str(info.value) == "Can not resolve param ${ph.op.key}"
    assert info.value.ref == "ph.op.key"


def test_null_output_value_is_unresolved():
    with pytest.raises(UnresolvedReference):
        resolve("${ph.op.key}", ctx(node_output={"op": {"key": None}}))


def test_dotted_name_found_in_opt_wins_over_outputs():
    c = ctx(opt={"ph.op.key": "opt"}, node_output={"op": {"key": "out"}})
    assert resolve("${ph.op.key}", c) == "opt"


def test_none_in_earlier_source_falls_through():
    assert resolve("${x}", ctx(opt={"x": None}, global_opt={"x": "g"})) == "g"


def test_references_in():
    assert references_in("${ a } $b ${c.d.e}") == ["a", "b", "c.d.e"]


def test_default_environ_is_live_process_env(monkeypatch):
    monkeypatch.setenv("AUTOEXEC_TEST_REF", "live")
    assert resolve("${AUTOEXEC_TEST_REF}", RefContext()) == "live"
