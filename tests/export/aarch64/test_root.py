"""Preparing the emulated Raspberry Pi's environment: staged builds, the commands, the pins, the ELF check."""

from __future__ import annotations

import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tumorscan.export.aarch64.guest import Emulator
from tumorscan.export.aarch64.host import CheckError, Log
from tumorscan.export.aarch64.root import (
    KEYRING,
    WHEEL_PLATFORMS,
    RootBuilder,
    apt_options,
    build_once,
    checkout_files,
    debootstrap_command,
    load_alignments,
    package_command,
    pinned,
    requirement_names,
    runtime_pins,
    shared_library_alignment,
    wheels_command,
)

METADATA = """Metadata-Version: 2.4
Name: tumorscan
Requires-Dist: numpy>=1.24
Requires-Dist: Pillow>=10
Requires-Dist: ai-edge-litert<3,>=1.2; platform_machine == "x86_64" or platform_machine == "aarch64"
Requires-Dist: onnxruntime>=1.17; extra == "onnx"
Requires-Dist: pydicom[pixeldata]>=3; extra == 'dicom'
Requires-Dist: tensorflow>=2.16; extra == "train"
Requires-Dist: click (>=8)

Requires-Dist: not-a-header-in-the-description
"""


class RecordingLog(Log):
    """A log that records the commands it is given instead of running them."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.commands: list[list[str]] = []
        self.steps: list[str] = []

    def step(self, text: str) -> None:
        self.steps.append(text)

    def run(self, command: list[str], **kwargs: Any) -> None:
        self.commands.append(command)


def _elf(*segments: tuple[int, int]) -> bytes:
    """A 64-bit little-endian ELF header and its program headers, each (type, alignment)."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)
    struct.pack_into("<HH", header, 0x36, 56, len(segments))
    for kind, align in segments:
        program = bytearray(56)
        struct.pack_into("<I", program, 0, kind)
        struct.pack_into("<Q", program, 0x30, align)
        header += program
    return bytes(header)


def test_a_stage_is_built_once_and_again_after_an_interruption(tmp_path: Path) -> None:
    log = RecordingLog(tmp_path / "setup.log")
    built: list[Path] = []

    def build(folder: Path) -> None:
        built.append(folder)
        (folder / "made").write_text("x", encoding="utf-8")

    build_once(tmp_path / "root", "building a root", build, log)
    build_once(tmp_path / "root", "building a root", build, log)
    assert built == [tmp_path / "root"] and log.steps == ["building a root (first run only)"]
    assert (tmp_path / "root.ok").read_text(encoding="utf-8").startswith("built in ")

    (tmp_path / "root.ok").unlink()
    (tmp_path / "root" / "left-over").write_text("half", encoding="utf-8")
    build_once(tmp_path / "root", "building a root", build, log)
    assert len(built) == 2 and sorted(p.name for p in (tmp_path / "root").iterdir()) == ["made"]


def test_a_failed_stage_leaves_no_stamp(tmp_path: Path) -> None:
    def fail(folder: Path) -> None:
        raise CheckError("mirror unreachable")

    with pytest.raises(CheckError):
        build_once(tmp_path / "qemu", "downloading qemu", fail, RecordingLog(tmp_path / "setup.log"))
    assert not (tmp_path / "qemu.ok").exists()


def test_apt_uses_a_private_configuration(tmp_path: Path) -> None:
    options = apt_options(tmp_path, "arm64", as_root=False)
    assert f"-oDir::Etc={tmp_path / 'etc'}" in options and f"-oDir::Cache={tmp_path / 'cache'}" in options
    assert f"-oDir::State::status={tmp_path / 'status'}" in options
    assert "-oAPT::Architecture=arm64" in options and "-oAPT::Architectures=arm64" in options
    assert not any("Sandbox" in option for option in options)
    assert apt_options(tmp_path, "arm64", as_root=True) == [*options, "-oAPT::Sandbox::User=root"]


def test_debootstrap_only_downloads_a_minimal_arm64_root(tmp_path: Path) -> None:
    command = debootstrap_command(tmp_path / "tools", tmp_path / "root", "http://deb.example.org/debian")
    assert command == [
        str(tmp_path / "tools" / "usr" / "sbin" / "debootstrap"),
        "--download-only",
        "--arch=arm64",
        "--variant=minbase",
        "--include=python3",
        f"--keyring={KEYRING}",
        "bookworm",
        str(tmp_path / "root"),
        "http://deb.example.org/debian",
    ]


def test_pip_fetches_aarch64_wheels_and_the_package_alone(tmp_path: Path) -> None:
    python = tmp_path / "python"
    wheels = wheels_command(python, tmp_path / "site", ["numpy==2.4.6", "click==8.5.1"])
    assert wheels[:5] == [str(python), "-m", "pip", "install", "--quiet"]
    assert wheels[-4:] == ["--target", str(tmp_path / "site"), "numpy==2.4.6", "click==8.5.1"]
    assert "--only-binary=:all:" in wheels and wheels[wheels.index("--python-version") + 1] == "3.11"
    assert [wheels[i + 1] for i, word in enumerate(wheels) if word == "--platform"] == list(WHEEL_PLATFORMS)

    wheel = tmp_path / "tumorscan-0.1.0-py3-none-any.whl"
    assert package_command(python, tmp_path / "pkg", wheel)[5:] == [
        "--no-deps",
        "--target",
        str(tmp_path / "pkg"),
        str(wheel),
    ]


def test_installing_stages_the_wheels_once_per_list_of_pins(tmp_path: Path) -> None:
    log = RecordingLog(tmp_path / "setup.log")
    builder = RootBuilder(Emulator(tmp_path), "http://deb.example.org/debian", Path("python"), log)
    wheel = tmp_path / "tumorscan-0.1.0-py3-none-any.whl"

    first = builder.install(wheel, ["numpy==2.4.6", "click==8.5.1"])
    again = builder.install(wheel, ["click==8.5.1", "numpy==2.4.6"])
    other = builder.install(wheel, ["numpy==2.4.5", "click==8.5.1"])

    assert first.pins == ("numpy==2.4.6", "click==8.5.1") and first.site == again.site != other.site
    assert [command[-1] for command in log.commands] == [
        "click==8.5.1",
        str(wheel),
        str(wheel),
        "click==8.5.1",
        str(wheel),
    ]


def test_runtime_requirements_and_the_onnx_and_dicom_extras_are_read() -> None:
    assert requirement_names(METADATA) == {
        "numpy",
        "Pillow",
        "ai-edge-litert",
        "onnxruntime",
        "pydicom",
        "click",
    }
    assert requirement_names(METADATA, extras=()) == {"numpy", "Pillow", "ai-edge-litert", "click"}


def test_pins_take_the_reference_versions_sorted_by_name() -> None:
    assert pinned(
        {"numpy", "Pillow", "click", "pydicom"}, {"numpy": "2.4.6", "Pillow": "13.0.0", "click": "8"}
    ) == [
        "click==8",
        "numpy==2.4.6",
        "Pillow==13.0.0",
        "pydicom",
    ]


def test_pins_come_from_the_wheel_and_the_x86_python(tmp_path: Path) -> None:
    wheel = tmp_path / "tumorscan-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("tumorscan/__init__.py", "")
        archive.writestr(
            "tumorscan-0.1.0.dist-info/METADATA",
            "Name: tumorscan\nRequires-Dist: pytest>=8\nRequires-Dist: no-such-distribution-here\n",
        )
    pins = runtime_pins(wheel, Path(sys.executable))
    assert pins[0] == "no-such-distribution-here"
    assert pins[1].startswith("pytest==") and pins[1] == f"pytest=={pytest.__version__}"


def test_checkout_files_are_the_tracked_and_unignored_ones(tmp_path: Path) -> None:
    def git(*arguments: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *arguments], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / ".gitignore").write_text("build/\n", encoding="utf-8")
    for name in ("tracked.py", "deleted.py", "new.py", "build/left.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("", encoding="utf-8")
    git("add", ".gitignore", "tracked.py", "deleted.py")
    (tmp_path / "deleted.py").unlink()

    assert sorted(checkout_files(tmp_path)) == [".gitignore", "new.py", "tracked.py"]
    with pytest.raises(CheckError, match=r"^git cannot list the checkout's files: "):
        checkout_files(tmp_path.parent / "not-a-checkout")


def test_load_segment_alignments_are_read_from_elf_headers() -> None:
    pt_load, pt_dynamic = 1, 2
    assert load_alignments(_elf((pt_load, 65536), (pt_dynamic, 8), (pt_load, 16384))) == [65536, 16384]
    assert load_alignments(b"\x7fELF\x01\x01" + bytes(58)) is None  # 32-bit
    assert load_alignments(b"#!/bin/sh\n") is None


def test_the_smallest_alignment_of_every_shared_library_is_found(tmp_path: Path) -> None:
    (tmp_path / "site" / "numpy.libs").mkdir(parents=True)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "site" / "_core.cpython-311-aarch64-linux-gnu.so").write_bytes(_elf((1, 65536), (1, 65536)))
    (tmp_path / "site" / "numpy.libs" / "libgfortran.so.5").write_bytes(_elf((1, 4096)))
    (tmp_path / "site" / "notes.so.txt").write_text("not a library", encoding="utf-8")
    (tmp_path / "pkg" / "lib.so.d").mkdir()  # a folder named like a library

    assert shared_library_alignment([tmp_path / "site", tmp_path / "pkg"]) == (2, 4096)
    assert shared_library_alignment([tmp_path / "pkg"]) == (0, 1 << 62)
