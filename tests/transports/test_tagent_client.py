"""Tagent framing and handshakes against the byte traces captured from the real agent,
in both directions: our test agent must emit the agent's bytes, and our
client must emit the client's bytes."""
from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

import pytest

from autoexec.conf.rc4 import rc4
from autoexec.transports.base import TransportError
from autoexec.transports.tagent_client import (
    End, TagentAuthError, TagentClient, TagentConnection, TagentError, TagentProtocolError,
    answer_challenge, codec_for, parse_exit_trailer, split_challenge,
)
from autoexec.transports.decoding import LineSplitter
from tests.tagent_agent import TagentTestAgent

KEY = "Verify-Pass-123"
PLAIN_CHALLENGE = (6966, 36976, 1795571964)
SECURE_CHALLENGE = (30687, 7170, 1795571992)
GREETING_PLAIN = b"Linux|UTF-8|a6ad8da79e35e69bb4348397b313e3ef1b0529ed37|Tagent1.1"
GREETING_SECURE = b"Linux|UTF-8|a3a48da9852ae793b4328397b313e3ef1b0529e231|Tagent1.1s"
RESPONSE_PLAIN = b"a2a18ca48532e893b52e9e91bd1fe3ed1d0d26ef"
RESPONSE_SECURE_WIRE = bytes.fromhex(
    "f1a6daa78a64b193bb329c95e11defb84e0722be3aca36a74c300919f6b70fce30b44e619edc62c1")
EXEC_HELLO = b"root|execmd|UTF-8|6563686f2068656c6c6f||7b22464f4f223a22626172227d|3330"
EXEC_EXIT3 = b"root|execmd|UTF-8|6563686f2068693b20657869742033||"


def frame(payload: bytes) -> bytes:
    return struct.pack(">H", len(payload)) + payload


def read_all(sock: socket.socket) -> bytes:
    out = b""
    while piece := sock.recv(65536):
        out += piece
    return out


def replay_to_agent(tmp_path: Path, client_bytes: list[bytes], secure: bool = False,
                    challenge: tuple[int, int, int] = PLAIN_CHALLENGE, half_close: bool = False) -> bytes:
    """Feed the spec's client bytes to the test agent over a socketpair; return all it sent."""
    agent = TagentTestAgent(password=KEY, secure=secure, tmpdir=str(tmp_path), challenge=lambda: challenge,
                            clock=lambda: challenge[2])
    ours, theirs = socket.socketpair()
    ours.settimeout(10)
    server = threading.Thread(target=agent.serve_connection, args=(theirs,), daemon=True)
    server.start()
    ours.sendall(b"".join(client_bytes))
    if half_close:
        ours.shutdown(socket.SHUT_WR)
    got = read_all(ours)
    server.join(5)
    ours.close()
    return got


# -- agent side: the test agent reproduces the real agent's bytes -------------------------------
def test_agent_plain_execmd_trace_8_1(tmp_path: Path) -> None:
    got = replay_to_agent(tmp_path, [frame(RESPONSE_PLAIN), frame(EXEC_HELLO)])
    assert got.hex() == (b"\x00\x40" + GREETING_PLAIN + b"\x00\x0cauth succeed" + b"\x00\x06hello\n\x00\x00").hex()


def test_agent_failing_command_trace_8_2(tmp_path: Path) -> None:
    got = replay_to_agent(tmp_path, [frame(RESPONSE_PLAIN), frame(EXEC_EXIT3)])
    assert got.endswith(b"\x00\x0cauth succeed\x00\x03hi\n\x00\x003")


def test_agent_echo_trace_8_3(tmp_path: Path) -> None:
    got = replay_to_agent(tmp_path, [frame(RESPONSE_PLAIN), b"\x00\x18none|echo|UTF-8|70696e67"])
    assert got.endswith(b"auth succeed\x00\x04ping")


def test_agent_upload_trace_8_4(tmp_path: Path) -> None:
    dest = "$TMPDIR/" + "u" * 22 + ".txt"  # the captured dest path was 34 bytes long
    request = f"root|upload|UTF-8|66696c65|75702e747874|{dest.encode().hex()}|30".encode()
    assert len(request) == 0x6F
    got = replay_to_agent(tmp_path, [frame(RESPONSE_PLAIN), frame(request), b"\x00\x04abc\n\x00\x00"],
                          half_close=True)
    assert got.endswith(b"auth succeed\x00\x0aStatus:200\x00\x00")
    assert (tmp_path / ("u" * 22 + ".txt")).read_bytes() == b"abc\n"


def test_agent_secure_trace_8_5(tmp_path: Path) -> None:
    request = rc4(KEY.encode(), EXEC_EXIT3)
    assert request[:8].hex(" ") == "e2 fb d4 e5 ce 63 a8 c7"
    got = replay_to_agent(tmp_path, [b"\x00\x28" + RESPONSE_SECURE_WIRE, frame(request)], secure=True,
                          challenge=SECURE_CHALLENGE)
    expected = (b"\x00\x41" + GREETING_SECURE + b"\x00\x0c" + bytes.fromhex("f1e1cff99275a5c1e067cac2")
                + b"\x00\x03" + bytes.fromhex("f8fdb1") + b"\x00\x00" + bytes.fromhex("a3"))
    assert got.hex() == expected.hex()


def test_agent_secure_wrong_credential_answers_encrypted_auth_failed(tmp_path: Path) -> None:
    wrong = rc4(b"wrong-key", rc4(b"wrong-key", b"220025790,1795571992").hex().encode())
    got = replay_to_agent(tmp_path, [frame(wrong)], secure=True, challenge=SECURE_CHALLENGE)
    assert got == b"\x00\x41" + GREETING_SECURE + b"\x00\x0b" + rc4(KEY.encode(), b"auth failed")


def test_agent_rejects_short_request_like_the_perl_agent(tmp_path: Path) -> None:
    got = replay_to_agent(tmp_path, [frame(RESPONSE_PLAIN), frame(b"none|reload|UTF-8")])
    assert got.endswith(b"auth succeed\x00\x00request protocol error, separate request failed, client:local:0.")


# -- client side: our client emits the real client's bytes -----------------------------------------
class ScriptedAgent:
    """Plays the agent's side of a captured trace and records what the client sent."""

    def __init__(self, script: list[tuple[str, bytes]]) -> None:
        self.script = script
        self.received: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(5)
        with conn:
            for direction, data in self.script:
                if direction == "send":
                    conn.sendall(data)
                else:
                    head = conn.recv(2, socket.MSG_WAITALL)
                    (length,) = struct.unpack(">H", head)
                    self.received.append(head + conn.recv(length, socket.MSG_WAITALL))
            conn.shutdown(socket.SHUT_WR)
        self.listener.close()


def test_client_plain_execmd_matches_trace_8_1() -> None:
    agent = ScriptedAgent([("send", frame(GREETING_PLAIN)), ("recv", b""), ("send", frame(b"auth succeed")),
                           ("recv", b""), ("send", frame(b"hello\n") + b"\x00\x00")])
    lines: list[str] = []
    code = TagentClient("127.0.0.1", agent.port, KEY, read_timeout=5).execmd(
        "echo hello", lines.append, env={"FOO": "bar"}, timeout=30)
    agent.thread.join(5)
    assert agent.received == [frame(RESPONSE_PLAIN), frame(EXEC_HELLO)]
    assert (code, lines) == (0, ["hello"])


def test_client_secure_execmd_matches_trace_8_5_and_returns_real_exit() -> None:
    agent = ScriptedAgent([("send", frame(GREETING_SECURE)), ("recv", b""),
                           ("send", b"\x00\x0c" + bytes.fromhex("f1e1cff99275a5c1e067cac2")), ("recv", b""),
                           ("send", b"\x00\x03" + bytes.fromhex("f8fdb1") + b"\x00\x00\xa3")])
    lines: list[str] = []
    code = TagentClient("127.0.0.1", agent.port, KEY, read_timeout=5).execmd("echo hi; exit 3", lines.append)
    agent.thread.join(5)
    assert agent.received == [b"\x00\x28" + RESPONSE_SECURE_WIRE, frame(rc4(KEY.encode(), EXEC_EXIT3))]
    assert (code, lines) == (3, ["hi"])


def test_client_wrong_credential_is_auth_error() -> None:
    agent = ScriptedAgent([("send", frame(GREETING_PLAIN))])
    with pytest.raises(TagentAuthError) as info:
        TagentClient("127.0.0.1", agent.port, "not-the-key", read_timeout=5).echo("x")
    assert isinstance(info.value, TransportError) and "\n" not in str(info.value)
    assert "not-the-key" not in str(info.value)


# -- parsing units --------------------------------------------------------------------------------
def test_answer_challenge_matches_trace_and_rejects_wrong_key() -> None:
    challenge = split_challenge(GREETING_PLAIN)[1]
    assert answer_challenge(KEY.encode(), challenge).encode() == RESPONSE_PLAIN
    with pytest.raises(TagentAuthError):
        answer_challenge(b"other-key", challenge)


def test_answer_challenge_without_server_time_uses_local_clock() -> None:
    challenge = rc4(b"k3y-12", b"3,4").hex()
    assert rc4(b"k3y-12", bytes.fromhex(answer_challenge(b"k3y-12", challenge, now=lambda: 77.9))) == b"12,77"


@pytest.mark.parametrize("greeting", [b"Linux|UTF-8|abcd|Tagent2.0", b"Linux|UTF-8|abcd", b""])
def test_split_challenge_rejects_unknown_greetings(greeting: bytes) -> None:
    with pytest.raises(TagentProtocolError):
        split_challenge(greeting)


def test_split_challenge_reads_windows_agent() -> None:
    info, _ = split_challenge(b"windows|cp936|00|Tagent1.1s")
    assert info.is_windows and info.secure and info.charset == "cp936"


@pytest.mark.parametrize("trailer, expected", [
    ("3", (3, [])), ("137\n", (137, [])), ("warning\n9", (9, ["warning"])),
    ("execute timeout(2 seconds)", (None, ["execute timeout(2 seconds)"])),
])
def test_parse_exit_trailer(trailer: str, expected: tuple[int | None, list[str]]) -> None:
    assert parse_exit_trailer(trailer) == expected


def test_codec_for_maps_lang_c_to_utf8() -> None:
    assert codec_for("C") == "utf-8"
    assert codec_for("cp936") == "gbk"


def test_line_assembler_decodes_gbk_split_across_chunks() -> None:
    splitter = LineSplitter(charset="gbk")
    data = "中文行\r\nsecond".encode("gbk")
    assert splitter.feed(data[:3]) == []
    assert splitter.feed(data[3:]) == ["中文行"]
    assert splitter.flush() == ["second"]


def _pair_connection(max_frame: int = 65535, secure: bool = False) -> tuple[TagentConnection, socket.socket]:
    a, b = socket.socketpair()
    conn = TagentConnection(a, KEY.encode(), "pair", read_timeout=0.5, write_timeout=0.5, max_frame=max_frame)
    conn.secure = secure
    return conn, b


def test_recv_distinguishes_clean_end_and_encrypted_trailer() -> None:
    conn, peer = _pair_connection(secure=True)
    peer.sendall(frame(rc4(KEY.encode(), b"data")) + b"\x00\x00" + rc4(KEY.encode(), b"boom"))
    peer.shutdown(socket.SHUT_WR)
    assert conn.recv() == b"data"
    assert conn.recv() == End(b"boom")


def test_recv_rejects_frame_above_limit() -> None:
    conn, peer = _pair_connection(max_frame=16)
    peer.sendall(frame(b"x" * 17))
    with pytest.raises(TagentProtocolError, match="17-byte frame"):
        conn.recv()


def test_recv_times_out_on_partial_chunk() -> None:
    conn, peer = _pair_connection()
    peer.sendall(b"\x00\x10abc")
    with pytest.raises(TagentError, match="read timeout"):
        conn.recv()


def test_send_refuses_oversize_message() -> None:
    conn, _peer = _pair_connection()
    with pytest.raises(TagentProtocolError, match="frame limit"):
        conn.send(b"x" * 65536)


def test_client_repr_hides_password() -> None:
    assert "Verify" not in repr(TagentClient("h", 1, KEY))
