"""Naming the module a failed tool lacked, from the interpreter messages in its output."""
from __future__ import annotations

from pathlib import Path

from autoexec.ops.toolerrors import MissingModule, advice, find_missing_module, missing_module_notice


def test_perl_and_python_messages_name_the_module() -> None:
    perl = "Can't locate Crypt/RC4.pm in @INC (you may need to install the Crypt::RC4 module) (@INC contains: /x)"
    assert find_missing_module(["INFO: start", perl]) == MissingModule("perl", "Crypt::RC4")
    assert find_missing_module(["ModuleNotFoundError: No module named 'pymongo.errors'"]) == MissingModule("python", "pymongo.errors")
    assert find_missing_module(["ImportError: No module named chardet"]) == MissingModule("python", "chardet")  # Python 2
    assert find_missing_module(["ERROR: file not found", "Can't locate object method \"x\""]) is None


def test_advice_says_where_and_how() -> None:
    text = advice(MissingModule("perl", "Net::OpenSSH"), on_target=False)
    assert "Perl module Net::OpenSSH" in text and "on the runner" in text and "apt-get install libnet-openssh-perl" in text
    text = advice(MissingModule("python", "yaml"), on_target=True)
    assert "Python module yaml" in text and "on the target host" in text and "PYTHONPATH" in text
    assert "tool library" in advice(MissingModule("python", "ServerAdapter"), on_target=False)
    assert "tool library" in advice(MissingModule("perl", "AutoExecUtils"), on_target=True)


def test_only_the_failed_ops_output_counts(tmp_path: Path) -> None:
    log = tmp_path / "node.txt"
    log.write_text("10:00:00 INFO: Execute -> a/first\n10:00:00 No module named 'old'\n"
                   "10:00:01 INFO: Execute -> a/second\n10:00:01 all fine\n")
    assert missing_module_notice(log, on_target=False) is None
    with log.open("a") as fh:
        fh.write("10:00:02 INFO: Execute -> a/third\n10:00:02 Can't locate Foo/Bar.pm in @INC (...)\n")
    notice = missing_module_notice(log, on_target=False)
    assert notice is not None and notice.startswith("ERROR: The tool lacks the Perl module Foo::Bar")
    assert missing_module_notice(tmp_path / "absent.txt", on_target=False) is None
