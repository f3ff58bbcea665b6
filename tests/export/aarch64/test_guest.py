"""Running inside the emulated Raspberry Pi's environment: command lines, environment, probes, tumor-infer."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tumorscan.export.aarch64.guest import (
    RUN_CLI,
    EmulatedCpu,
    Emulator,
    infer,
    infer_arguments,
    parse_cpu_probe,
    parse_qemu_version,
    scan_arguments,
)
from tumorscan.export.aarch64.host import CheckError


def test_the_probe_says_what_cpu_the_guest_sees() -> None:
    assert parse_cpu_probe("cortex-a76", "aarch64 3.11.2 0xd0b True\n") == EmulatedCpu(
        "cortex-a76", "3.11.2", "0xd0b", True
    )
    assert not parse_cpu_probe("cortex-a72", "aarch64 3.11.2 0xd08 False\n").dotprod
    with pytest.raises(CheckError, match=r"^the emulated Python runs on x86_64, not aarch64$"):
        parse_cpu_probe("cortex-a72", "x86_64 3.11.2 0x0 False")
    with pytest.raises(CheckError, match=r"^the emulated Python on cortex-a72 printed 'Illegal instruction'"):
        parse_cpu_probe("cortex-a72", "Illegal instruction\n")


def test_qemu_version_is_read_from_its_first_line() -> None:
    stdout = "qemu-aarch64 version 10.0.3 (Debian 1:10.0.3+ds-1)\nCopyright (c) 2003-2025 Fabrice Bellard\n"
    assert parse_qemu_version(stdout) == "10.0.3"
    with pytest.raises(CheckError, match=r"^qemu-aarch64 --version printed '', not its version$"):
        parse_qemu_version("")


def test_the_emulated_python_runs_from_the_cached_root(tmp_path: Path) -> None:
    emulator = Emulator(tmp_path, ("numpy==2.4.6",))
    assert emulator.command("cortex-a72", "-c", "print(1)") == [
        str(tmp_path / "qemu" / "usr" / "bin" / "qemu-aarch64"),
        "-cpu",
        "cortex-a72",
        "-L",
        str(tmp_path / "root"),
        str(tmp_path / "root" / "usr" / "bin" / "python3.11"),
        "-c",
        "print(1)",
    ]
    assert emulator.site.parent == tmp_path and emulator.site.name.startswith("site-")
    assert emulator.site != Emulator(tmp_path, ("numpy==2.4.5",)).site
    assert emulator.site == Emulator(tmp_path, ("numpy==2.4.6",)).site


def test_the_guest_does_not_inherit_the_host_python_settings(tmp_path: Path) -> None:
    emulator = Emulator(tmp_path)
    host = {"PATH": "/usr/bin", "PYTHONPATH": "/x86/site", "PYTHONHOME": "/x86", "VIRTUAL_ENV": "/venv"}
    assert emulator.environment(host) == {
        "PATH": "/usr/bin",
        "PYTHONPATH": f"{tmp_path / 'tumorscan'}{os.pathsep}{emulator.site}",
        "PYTHONNOUSERSITE": "1",
    }


def test_scan_folders_are_named_relative_to_the_checkout(tmp_path: Path) -> None:
    repo, outside = tmp_path / "repo", tmp_path / "elsewhere"
    (repo / "tests" / "data").mkdir(parents=True)
    outside.mkdir()
    assert scan_arguments([repo / "tests" / "data", outside], repo) == ["tests/data", str(outside)]
    with pytest.raises(CheckError, match=r"missing: no such scan folder$"):
        scan_arguments([repo / "missing"], repo)


def test_tumor_infer_is_given_the_model_only_when_one_is_named() -> None:
    assert infer_arguments(None, ["a", "b"]) == ["-c", RUN_CLI, "--jsonl", "--no-progress", "a", "b"]
    assert infer_arguments(Path("m.onnx"), ["a"]) == [
        "-c",
        RUN_CLI,
        "--jsonl",
        "--no-progress",
        "--model",
        "m.onnx",
        "a",
    ]


def test_infer_keeps_the_output_failed_scans_included(
    tmp_path: Path, fake_infer: Path, jsonl: Callable[..., str]
) -> None:
    records = tmp_path / "records.jsonl"
    records.write_text(jsonl(("a.png", "no_tumor", [0.1, 0.1, 0.7, 0.1])), encoding="utf-8")
    output = tmp_path / "results" / "m.tflite" / "cortex-a72.jsonl"

    text = infer(
        [sys.executable, str(fake_infer), str(records), "1"], None, None, ["a.png"], output, tmp_path
    )

    assert text == records.read_text(encoding="utf-8") == output.read_text(encoding="utf-8")


@pytest.mark.parametrize(("status", "printed"), [(2, True), (0, False)], ids=["usage error", "no records"])
def test_infer_fails_on_an_error_or_no_records(
    tmp_path: Path, fake_infer: Path, status: int, printed: bool
) -> None:
    records = tmp_path / "records.jsonl"
    records.write_text("{}\n" if printed else "", encoding="utf-8")
    python = [sys.executable, str(fake_infer), str(records), str(status)]

    with pytest.raises(
        CheckError, match=rf"^tumor-infer failed \(exit {status}\):\ntumor-infer stand-in called"
    ):
        infer(python, None, Path("m.tflite"), ["scans"], tmp_path / "out.jsonl", tmp_path)
    assert not (tmp_path / "out.jsonl").exists()
