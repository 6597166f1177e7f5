from __future__ import annotations

import json

import pytest

from autoexec.ops.references import RefContext, UnresolvedReference
from autoexec.ops.render import (hide_textarea_secrets, masked_cmdline, prepare_params, recorded_inputs,
                                 remote_filepath, render_argv)

CTX = RefContext(opt={"job": "J"}, environ={})


def fake_decrypt(value: str) -> str:
    if value.endswith("BAD"):
        raise ValueError("bad key")
    return "plain:" + value.split("}", 1)[-1].removeprefix("RC4:")


def prep(opt, desc, args=None, **kw):
    kw.setdefault("decrypt", fake_decrypt)
    return prepare_params(opt, desc, args, kw.pop("ctx", CTX), op_name="demo/op", **kw)


@pytest.mark.parametrize("typ", ["text", "select", "radio", "date", "datetime", "time", "phase",
                                 "userselect", "node", "json", "multiselect", "checkbox", "textarea",
                                 "password", "account", "filepath"])
def test_every_plain_type_renders_as_key_value(typ):
    p = prep({"name": "v1"}, {"name": typ})
    assert render_argv(p) == ["--name", "v1"]


def test_one_char_key_uses_single_dash():
    assert render_argv(prep({"k": "v"}, {"k": "text"})) == ["-k", "v"]


def test_empty_and_null_options_omitted_order_kept():
    p = prep({"z": "1", "e": "", "n": None, "a": "2"}, {"z": "text", "e": "text", "n": "json", "a": "text"})
    assert render_argv(p) == ["-z", "1", "-a", "2"]


def test_non_string_values_json_encoded():
    p = prep({"j": {"a": 1, "中": "文"}, "n": 3, "l": ["x"]}, {"j": "json", "n": "text", "l": "multiselect"})
    assert render_argv(p) == ["-j", '{"a": 1, "中": "文"}', "-n", "3", "-l", '["x"]']


def test_shell_metacharacters_kept_verbatim():
    value = r"""a "b" 'c' $HOME `id` \n \\ ; | &"""
    p = prep({"t": value, "x": value}, {"t": "text", "x": "textarea"}, [{"type": "text", "value": value}])
    assert render_argv(p) == ["-t", value, "-x", value, value]


@pytest.mark.parametrize("value,expected", [(True, ["--force"]), ("true", ["--force"]), ("TRUE", ["--force"]),
                                            (False, []), ("false", []), ("", []), (None, [])])
def test_switch_bare_flag_only_when_true(value, expected):
    assert render_argv(prep({"force": value}, {"force": "switch"})) == expected


def test_switch_one_char_and_windows_syntaxes():
    p = prep({"f": True, "quiet": "true", "off": "false"}, {"f": "switch", "quiet": "switch", "off": "switch"})
    assert render_argv(p) == ["-f", "--quiet"]
    assert render_argv(p, interpreter="cmd") == ["/f", "/quiet"]
    assert render_argv(p, interpreter="vbscript") == ["/f", "/quiet"]
    assert render_argv(p, interpreter="powershell") == ["-f", "-quiet"]


def test_textarea_newlines_become_backslash_n():
    p = prep({"script": "line1\nline2\r\nline3"}, {"script": "textarea"})
    assert p.options["script"] == "line1\\nline2\\nline3"
    assert render_argv(p) == ["--script", "line1\\nline2\\nline3"]


def test_textarea_dollar_home_survives_while_job_refs_resolve():
    p = prep({"script": "cd $HOME && echo $job ${job}"}, {"script": "textarea"},
             ctx=RefContext(opt={"job": "J"}, environ={"HOME": "/root"}))
    assert p.options["script"] == "cd $HOME && echo J J"


def test_file_option_ids_fetched_and_comma_joined():
    """Integer ids come from the console; strings are devmode local paths. Unfetchable ones drop out."""
    fetched = []

    def fetch(file_id):
        fetched.append(file_id)
        return {1: "a.txt", 2: "b.sql"}.get(file_id)

    p = prep({"files": [1, "missing/path", True, 2, 3]}, {"files": "file"}, fetch_file=fetch)
    assert fetched == [1, "missing/path", 2, 3]
    assert p.has_file
    assert p.options["files"] == '["file/a.txt", "file/b.sql"]'
    assert render_argv(p) == ["--files", "file/a.txt,file/b.sql"]


def test_file_option_json_text_and_reference():
    ctx = RefContext(opt={"ids": [7]}, environ={})
    p = prep({"f1": "[7]", "f2": "${ids}"}, {"f1": "file", "f2": "file"}, ctx=ctx, fetch_file=lambda i: f"n{i}")
    assert render_argv(p) == ["--f1", "file/n7", "--f2", "file/n7"]


def test_file_option_bad_or_empty_value_omitted_with_warning():
    p = prep({"f": "not json", "g": []}, {"f": "file", "g": "file"}, fetch_file=lambda i: "x")
    assert render_argv(p) == []
    assert not p.has_file
    assert any("Resolve file param" in w for w in p.warnings)


def test_filepath_local_relative_and_remote_basename():
    p = prep({"cfg": "/job/7/output-op/n/op/conf.yml"}, {"cfg": "filepath"}, job_dir="/job/7")
    assert p.file_paths == ["output-op/n/op/conf.yml"]
    assert render_argv(p) == ["--cfg", "output-op/n/op/conf.yml"]
    assert render_argv(p, remote=True) == ["--cfg", "file/conf.yml"]
    assert remote_filepath("output-op/n/op/conf.yml") == "file/conf.yml"


def test_free_arguments_keep_order_including_file_and_filepath():
    args = [{"type": "text", "value": "first"}, {"type": "file", "value": [5]},
            {"type": "filepath", "value": "dir/x.txt"}, {"type": "textarea", "value": "a\nb"},
            {"type": "password", "value": "{RC4}abc"}, {"type": "text", "value": "${job}"}]
    p = prep({}, {}, args, fetch_file=lambda i: "f.bin")
    assert render_argv(p) == ["first", "file/f.bin", "dir/x.txt", "a\\nb", "plain:abc", "J"]
    assert render_argv(p, remote=True)[2] == "file/x.txt"
    assert p.has_file and p.file_paths == ["dir/x.txt"]


def test_password_argument_is_not_reference_resolved():
    p = prep({}, {}, [{"type": "password", "value": "${job}"}])
    assert render_argv(p) == ["${job}"]


def test_legacy_arg_dict_form():
    p = prep({}, {}, {"type": "text", "values": ["a", "b"]})
    assert render_argv(p) == ["a", "b"]


@pytest.mark.parametrize("value", ["{ENCRYPTED}abc", "{RC4}abc", "RC4:abc"])
def test_password_prefixes_decrypted(value):
    assert prep({"pw": value}, {"pw": "password"}).options["pw"] == "plain:abc"


def test_password_resolved_then_decrypted_and_plain_kept():
    ctx = RefContext(opt={"secret": "{RC4}xyz"}, environ={})
    p = prep({"a": "${secret}", "b": "plain"}, {"a": "password", "b": "password"}, ctx=ctx)
    assert p.options == {"a": "plain:xyz", "b": "plain"}


def test_decrypt_failure_warns_and_keeps_value():
    p = prep({"pw": "{RC4}BAD"}, {"pw": "password"})
    assert p.options["pw"] == "{RC4}BAD"
    assert p.warnings == ["WARN: Decrypt password option:demo/op->pw failed."]


def test_account_lookup():
    calls = []

    def get_account(user, acc_id, proto):
        calls.append((user, acc_id, proto))
        return "{RC4}dbpass"

    p = prep({"dbaccount": "root/12/mysql"}, {"dbaccount": "account"}, get_account=get_account)
    assert calls == [("root", "12", "mysql")]
    assert p.options["dbaccount"] == "root/plain:dbpass"


def test_account_lookup_error_warns_and_keeps_value():
    p = prep({"acc": "root"}, {"acc": "account"}, get_account=lambda *a: "x")
    assert p.options["acc"] == "root"
    assert p.warnings and p.warnings[0].startswith("WARN: Get account")


def test_missing_desc_warns_and_treated_as_text():
    p = prep({"x": "1"}, {})
    assert render_argv(p) == ["-x", "1"]
    assert p.warnings == ["WARN: Can not determine option x type by params desc, it is handled as text."]


def test_desc_type_case_insensitive():
    assert render_argv(prep({"s": "TRUE"}, {"s": "Switch"})) == ["-s"]


def test_unresolved_output_reference_propagates():
    with pytest.raises(UnresolvedReference):
        prep({"x": "${ph.op.k}"}, {"x": "text"})


def test_windows_interpreter_syntaxes():
    p = prep({"name": "a b", "k": "v"}, {"name": "text", "k": "text"}, [{"type": "text", "value": "x y"}])
    assert render_argv(p, interpreter="cmd") == ['/name:"a b"', "/k:v", '"x y"']
    assert render_argv(p, interpreter="vbscript") == ["/name:a b", "/k:v", "x y"]
    assert render_argv(p, interpreter="powershell") == ["-name", "a b", "-k", "v", "x y"]
    assert render_argv(p, interpreter="bash") == ["--name", "a b", "-k", "v", "x y"]


def test_masked_cmdline_hides_secrets():
    opt = {"tinput": "abc", "tpassword": "{RC4}s3", "acc": "u/1/ssh", "dbaccount": "root/pw",
           "sql": "create user u identified by 'p1';\nselect 1", "args": "a b"}
    desc = {"tinput": "text", "tpassword": "password", "acc": "account", "dbaccount": "text",
            "sql": "textarea", "args": "text"}
    p = prep(opt, desc, [{"type": "password", "value": "argpw"}])
    text = masked_cmdline(p, "demo/local")
    assert text.startswith("demo/local --tinput abc --tpassword '******' --acc '******' --dbaccount '******' ")
    assert "p1" not in text and "s3" not in text and "argpw" not in text and "root/pw" not in text
    assert "identified by **hidden**\\nselect 1" in text
    assert "--args 'a b'" in text
    assert masked_cmdline(prep({}, {}), "") == ""


@pytest.mark.parametrize("marker", ["password=", "password:", "pwd=", "pwd:", "IDENTIFIED BY", "Password = "])
def test_textarea_secret_markers(marker):
    hidden = hide_textarea_secrets(f"x\\n{marker}topsecret more\\nnext")
    assert "topsecret" not in hidden and hidden.endswith("**hidden**\\nnext") and hidden.startswith("x\\n")


def test_recorded_inputs_masks_and_unescapes():
    opt = {"t": "v", "pw": "{RC4}x", "empty_pw": "", "sql": "a\npwd=zz\nb", "f": [1]}
    desc = {"t": "text", "pw": "password", "empty_pw": "password", "sql": "textarea", "f": "file"}
    p = prep(opt, desc, [{"type": "password", "value": "p"}, {"type": "text", "value": "t"}],
             fetch_file=lambda i: "a.txt")
    rec = recorded_inputs(p)
    assert rec == {"options": {"t": "v", "pw": "******", "empty_pw": "", "sql": "a\npwd=**hidden**\nb",
                               "f": '["file/a.txt"]'},
                   "arguments": ["******", "t"]}
    json.dumps(rec)
