"""The inline protocol's reader on byte streams built here: what other output does to a record
(nothing, or the file is fetched again over SFTP), never a wrong file."""
from __future__ import annotations

import base64
import gzip
import os
from pathlib import Path

from autoexec.transports.base import RemoteOp
from autoexec.transports.ssh_inline import InlineReader

NONCE = "AXM" + "ab" * 16


def _op(tmp_path: Path, names: list[str], more: list[str] | None = None) -> RemoteOp:
    return RemoteOp(job_id="j", root="/tmp/autoexec-j", uploads=[], workdir="", argv=["true"], env={},
                    fetch=names, fetch_dir=tmp_path / "got",
                    fetch_more=(lambda _got: list(more)) if more is not None else None)


def _record(index: int, data: bytes, width: int = 76) -> list[bytes]:
    text = base64.b64encode(gzip.compress(data)).decode()
    body = [text[i:i + width].encode() for i in range(0, len(text), width)]
    return [f"{NONCE}:F:{index}".encode(), *body, f"{NONCE}:E:{index}".encode()]


def _reader(tmp_path: Path, names: list[str], more: list[str] | None = None) -> tuple[InlineReader, list[str], list[bytes]]:
    lines: list[str] = []
    sent: list[bytes] = []
    reader = InlineReader(NONCE, lines.append, _op(tmp_path, names, more), "/tmp/autoexec-j", "#AXENDx")
    reader.send = sent.append
    return reader, lines, sent


def _feed(reader: InlineReader, lines: list[bytes], chunk: int = 7) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    for i in range(0, len(stream), chunk):  # records split anywhere across reads
        reader.feed(stream[i:i + chunk])
    reader.close()


def test_records_come_back_byte_exact_between_foreign_lines(tmp_path: Path) -> None:
    blob = os.urandom(5000)
    reader, lines, sent = _reader(tmp_path, ["output.json", "blob.bin"])
    record = _record(1, blob)
    stream = [b"tool says hi", b"no newline from a profile" + f"{NONCE}:R:0".encode(),
              *_record(0, b'{"a": 1}'), b"left behind: ok",
              record[0], record[1], b"left behind: a line that is not base64!", *record[2:],
              f"{NONCE}:W".encode(), b"trailing noise"]
    _feed(reader, stream)
    assert reader.finished and reader.garbled == [] and reader.sftp_needed == []
    assert reader.fetched["output.json"].read_bytes() == b'{"a": 1}'
    assert reader.fetched["blob.bin"].read_bytes() == blob
    assert lines == ["tool says hi", "no newline from a profile", "left behind: ok",
                     "left behind: a line that is not base64!", "trailing noise"]
    assert sent == [b"#AXENDx\n"] and reader.last_round


def test_a_base64_looking_foreign_line_inside_a_record_sends_it_to_sftp(tmp_path: Path) -> None:
    reader, _lines, sent = _reader(tmp_path, ["output.json"], more=["report.txt"])
    record = _record(0, os.urandom(3000))
    _feed(reader, [f"{NONCE}:R:0".encode(), record[0], record[1], b"QUJDRA", *record[2:], f"{NONCE}:W".encode()])
    assert reader.garbled == ["output.json"] and reader.sftp_needed == ["output.json"]
    assert "output.json" not in reader.fetched
    assert reader.more_after_sftp  # the second round waits for output.json to come over SFTP
    assert sent == [b"ax_k=1\n#AXENDx\n"]  # the host keeps the root for it


def test_truncated_or_missing_records_are_never_taken(tmp_path: Path) -> None:
    reader, _lines, sent = _reader(tmp_path, ["a", "b", "c"])
    a = _record(0, b"aaaa" * 100)
    c = _record(2, b"c")
    _feed(reader, [f"{NONCE}:R:0".encode(), *a[:-2], a[-1],  # a body line lost
                   *_record(1, b"b")[:-1],                    # b's end marker lost: c's start ends it
                   *c, f"{NONCE}:W".encode()])
    assert sorted(reader.garbled) == ["a", "b"] and list(reader.fetched) == ["c"]
    assert sent == [b"ax_k=1\n#AXENDx\n"]


def test_second_round_is_asked_for_after_a_clean_first(tmp_path: Path) -> None:
    reader, _lines, sent = _reader(tmp_path, ["output.json"], more=["out/r.txt", "odd\nname"])
    _feed(reader, [f"{NONCE}:R:0".encode(), *_record(0, b"{}"), f"{NONCE}:W".encode()])
    assert sent == [b"ax_e /tmp/autoexec-j/out/r.txt 1\nprintf '%s:W\\n' \"$N\"\n"]
    assert reader.sftp_needed == ["odd\nname"] and not reader.last_round
    _feed(reader, [*_record(1, b"report"), f"{NONCE}:W".encode()])
    assert reader.fetched["out/r.txt"].read_bytes() == b"report"
    assert sent[-1] == b"ax_k=1\n#AXENDx\n" and reader.last_round


def test_a_failed_staging_step_is_quoted(tmp_path: Path) -> None:
    reader, lines, _sent = _reader(tmp_path, [])
    _feed(reader, [b"bashrc says hi", b"mkdir: cannot create directory '/tmp/x': Permission denied",
                   f"{NONCE}:X:stage".encode()])
    assert reader.fallback == "stage" and not reader.finished
    assert reader.stage_error == "mkdir: cannot create directory '/tmp/x': Permission denied"
    assert lines[0] == "bashrc says hi"
