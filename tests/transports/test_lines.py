"""The one line rule of every transport, and its ``output.charsets`` setting."""
from __future__ import annotations

from pathlib import Path

import pytest

from autoexec.conf.config import ConfigError, load_config
from autoexec.transports.decoding import LineSplitter, parse_charsets


def test_lines_split_inside_a_character_crlf_and_the_unfinished_rest() -> None:
    data = "中\r\n文\r\r\n\n三".encode("gbk")
    splitter = LineSplitter()
    got = [line for i in range(len(data)) for line in splitter.feed(data[i:i + 1])]
    assert got + splitter.flush() == ["中", "文", "", "三"]
    assert splitter.flush() == []


def test_raw_lines_and_an_overlong_line() -> None:
    splitter = LineSplitter(max_line=4)
    assert splitter.feed_raw(b"ab\r\ncdefgh") == [b"ab", b"cdefgh"]
    assert splitter.feed(b"xyz") == [] and splitter.feed(b"12") == ["xyz12"]


def test_declared_charset_then_fallbacks_then_replacement() -> None:
    big5 = "中文".encode("big5")
    assert LineSplitter(charset="big5").feed(big5 + b"\n") == ["中文"]
    assert LineSplitter(("big5",)).feed(big5 + b"\n") == ["中文"]
    assert LineSplitter().feed(big5 + b"\n") == [big5.decode("gb18030")]
    assert LineSplitter(("ascii",)).feed(b"\xff\n") == ["\ufffd"]


def test_output_charsets_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOEXEC_OUTPUT_CHARSETS", raising=False)
    assert load_config(tmp_path).output_charsets == ("gb18030",)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.ini").write_text("[autoexec]\noutput.charsets = Big5, UTF-8, GBK\n")
    assert load_config(tmp_path).output_charsets == ("big5", "gbk")
    monkeypatch.setenv("AUTOEXEC_OUTPUT_CHARSETS", "latin9")
    assert load_config(tmp_path).output_charsets == ("iso8859-15",)
    monkeypatch.setenv("AUTOEXEC_OUTPUT_CHARSETS", "klingon")
    with pytest.raises(ConfigError, match="AUTOEXEC_OUTPUT_CHARSETS: output.charsets: unknown charset 'klingon'"):
        load_config(tmp_path)
    assert parse_charsets(" , ") == ("gb18030",)
