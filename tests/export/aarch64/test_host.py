"""The x86 host's side of the emulated Raspberry Pi check: its checks, its Debian mirror, its commands."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tumorscan.export.aarch64 import host
from tumorscan.export.aarch64.host import CheckError, Log, check_host, python_json, system_mirror


def _apt(tmp_path: Path, sources_list: str = "", **sources_d: str) -> Path:
    """An /etc/apt stand-in: sources.list and files in sources.list.d (name -> text)."""
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text(sources_list, encoding="utf-8")
    for name, text in sources_d.items():
        (apt / "sources.list.d" / name.replace("_", ".")).write_text(text, encoding="utf-8")
    return apt


def test_log_keeps_command_output_and_shows_its_end_on_failure(tmp_path: Path) -> None:
    log = Log(tmp_path / "logs" / "setup.log")
    log.run([sys.executable, "-c", "print('first')"])
    failing = "import sys\nfor i in range(20): print(f'line {i}')\nsys.exit(3)"

    with pytest.raises(CheckError) as raised:
        log.run([sys.executable, "-c", failing])

    message = str(raised.value)
    assert message.startswith(f"{Path(sys.executable).name} failed (exit 3); end of {log.path}:\n")
    assert message.endswith("line 19") and "line 5\n" in message and "line 4\n" not in message
    text = log.path.read_text(encoding="utf-8")
    assert text.startswith(f"$ {sys.executable} -c print('first')\nfirst\n")


def test_mirror_comes_from_a_release_suite_line(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path,
        "# deb http://old.example/debian bookworm main\n"
        "deb http://security.debian.org/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://deb.example.org/debian/ bookworm main # local\n",
    )
    assert system_mirror(apt) == "http://deb.example.org/debian"


def test_mirror_comes_from_a_deb822_stanza(tmp_path: Path) -> None:
    stanzas = (
        "Types: deb\nURIs: http://off.example/debian\nSuites: trixie\nEnabled: no\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: trixie\n\n"
        "Types: deb\nURIs: http://updates.example/debian\nSuites: trixie-updates\n\n"
        "# the mirror\nTypes: deb\nURIs: http://deb.example.org/debian\nSuites: trixie trixie-updates\n"
    )
    apt = _apt(tmp_path, debian_sources=stanzas)
    assert system_mirror(apt) == "http://deb.example.org/debian"


def test_no_debian_mirror_is_none(tmp_path: Path) -> None:
    apt = _apt(tmp_path, "deb http://archive.ubuntu.com/ubuntu noble main\n", extra_list="")
    assert system_mirror(apt) is None


def test_host_check_names_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(b"")
    python = Path(sys.executable)
    no_mirror = _apt(tmp_path)
    monkeypatch.setattr(host.shutil, "which", lambda tool: f"/usr/bin/{tool}")

    with pytest.raises(CheckError, match=r"^/no/python: no such Python; pass --x86-python$"):
        check_host(Path("/no/python"), None, keyring, no_mirror)
    with pytest.raises(CheckError, match=r"keyring.gpg not found; apt-get install debian-archive-keyring$"):
        check_host(python, None, tmp_path / "missing" / "keyring.gpg", no_mirror)
    with pytest.raises(
        CheckError, match=r"^no Debian mirror in .*/apt/sources.list\(\.d\); pass --mirror URL$"
    ):
        check_host(python, None, keyring, no_mirror)
    assert (
        check_host(python, "http://given.example/debian", keyring, no_mirror) == "http://given.example/debian"
    )

    monkeypatch.setattr(host.shutil, "which", lambda tool: None if tool == "dpkg-deb" else tool)
    with pytest.raises(CheckError, match=r"^dpkg-deb not found: this check needs a Debian-based host$"):
        check_host(python, "http://given.example/debian", keyring, no_mirror)


def test_python_json_reads_what_the_code_prints_or_its_last_error_line() -> None:
    python = Path(sys.executable)
    code = "import json, sys; print(json.dumps(sys.argv[1:]))"
    assert python_json(python, code, "a", "b") == ["a", "b"]

    with pytest.raises(CheckError, match=r": ValueError: no model here$"):
        python_json(python, "raise ValueError('no model here')")
