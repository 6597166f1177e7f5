"""sshcmd: hosts-file parsing (pure) and one real parallel run against the sshd pool."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from autoexec.cli.sshcmd import HostEntry, HostsFileError, main, parse_hosts
from tests.sshd_pool import SshdPool


def test_hosts_file_three_formats_defaults_and_skipped_lines() -> None:
    text = """
# bootstrap targets
10.0.0.1:2200 admin s3cret
10.0.0.2 only-pass

   # indented comment
10.0.0.3:2201
10.0.0.4
[fe80::1]:2202 v6user v6pass extra-ignored
"""
    entries = parse_hosts(text, default_port=22, default_user="deploy", default_password="dflt")
    assert entries == [
        HostEntry("10.0.0.1", 2200, "admin", "s3cret"),
        HostEntry("10.0.0.2", 22, "deploy", "only-pass"),
        HostEntry("10.0.0.3", 2201, "deploy", "dflt"),
        HostEntry("10.0.0.4", 22, "deploy", "dflt"),
        HostEntry("fe80::1", 2202, "v6user", "v6pass"),
    ]
    assert entries[4].label == "v6user@[fe80::1]:2202"
    assert "s3cret" not in repr(entries[0])


def test_hosts_file_bad_port_names_the_line() -> None:
    with pytest.raises(HostsFileError, match="line 2: bad port 'ssh'"):
        parse_hosts("a 1\nb:ssh u p\n", 22, "root", "")


def test_missing_hosts_file_is_one_line_exit_2(tmp_path: Path) -> None:
    out = io.StringIO()
    assert main(["--hostsfile", str(tmp_path / "nope.txt"), "true"], out=out) == 2
    assert out.getvalue().count("\n") == 1 and out.getvalue().startswith("ERROR: cannot read hosts file")


def test_no_command_is_exit_2() -> None:
    out = io.StringIO()
    assert main(["--host", "127.0.0.1"], out=out) == 2
    assert out.getvalue() == "ERROR: Command not defined.\n"


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_parallel_run_prefixes_lines_and_reports_failed_hosts(sshd_pool: SshdPool, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    closed_port = 9  # discard: nothing listens on loopback
    p = sshd_pool.ports
    hosts = tmp_path / "hosts.txt"
    hosts.write_text(
        f"# pool\n127.0.0.1:{p[0]} {sshd_pool.user} {sshd_pool.password}\n"
        f"127.0.0.1:{p[1]} {sshd_pool.password}\n"
        f"127.0.0.1:{p[2]}\n"
        f"127.0.0.1:{p[3]} {sshd_pool.user} wrong-password\n"
        f"127.0.0.1:{closed_port}\n\n"
    )
    monkeypatch.setenv("SSHCMD_PASSWORD", sshd_pool.password)
    out = io.StringIO()
    code = main(["--hostsfile", str(hosts), "--user", sshd_pool.user, "--parallel", "3",
                 "--connect-timeout", "3", "sh", "-c", 'echo "one $1"; echo two', "sh", "$HOME x"], out=out)
    lines = out.getvalue().splitlines()
    assert code == 1
    for port in p[:3]:
        label = f"{sshd_pool.user}@127.0.0.1:{port}"
        mine = [line for line in lines if line.startswith(label + ":") or label + " " in line]
        assert mine == [f"{label}: one $HOME x", f"{label}: two", f"FINE: {label} execute success."]
    bad = f"{sshd_pool.user}@127.0.0.1:{p[3]}"
    closed = f"{sshd_pool.user}@127.0.0.1:{closed_port}"
    assert f"ERROR: {bad} execute failed, ssh {bad}: authentication failed" in lines
    assert f"ERROR: {closed} execute failed, ssh {closed}: connection refused" in lines
    assert lines[-1] == f"ERROR: 2 of 5 host(s) failed: {bad}, {closed}"
    assert sshd_pool.password not in out.getvalue()


@pytest.mark.integration
@pytest.mark.timeout(30)
def test_single_host_success_and_remote_exit_code(sshd_pool: SshdPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSHCMD_PASSWORD", sshd_pool.password)
    base = ["--host", "127.0.0.1", "--port", str(sshd_pool.ports[0]), "--user", sshd_pool.user]
    out = io.StringIO()
    assert main([*base, "echo", "hi"], out=out) == 0
    label = f"{sshd_pool.user}@127.0.0.1:{sshd_pool.ports[0]}"
    assert out.getvalue() == f"{label}: hi\nFINE: {label} execute success.\n"
    out = io.StringIO()
    assert main([*base, "sh", "-c", "exit 5"], out=out) == 1
    assert f"ERROR: {label} execute failed, exit code 5." in out.getvalue()
    out = io.StringIO()  # one argument is a command line for the remote shell, as with ssh
    assert main([*base, 'echo one; echo "$((40 + 2))" | tr 4 x'], out=out) == 0
    assert out.getvalue() == f"{label}: one\n{label}: x2\nFINE: {label} execute success.\n"
