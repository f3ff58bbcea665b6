"""Preparing the arm64 environment: qemu-aarch64, a Debian arm64 root, the aarch64 wheels, tumorscan's wheel.

Each part is built once in the cache folder, from Debian's archive and PyPI, without root privileges.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from email.parser import HeaderParser
from pathlib import Path

from .guest import Emulator
from .host import KEYRING, CheckError, Log, python_json

ROOT_SUITE = "bookworm"  # Raspberry Pi OS bookworm's base: Python 3.11, glibc 2.36
QEMU_SUITE = "trixie"  # qemu-user 10; bookworm's qemu-user 7.2 crashes in ai-edge-litert and onnxruntime
WHEEL_PLATFORMS = (
    "manylinux_2_28_aarch64",
    "manylinux_2_27_aarch64",
    "manylinux2014_aarch64",
    "manylinux_2_17_aarch64",
)
RUNTIME_EXTRAS = ("onnx", "dicom")
APT_FOLDERS = ("etc/sources.list.d", "etc/preferences.d", "state/lists/partial", "cache/archives/partial")
PROBE_VERSIONS = """
import json, sys
from importlib import metadata
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        pass
print(json.dumps(found))
"""


def build_once(folder: Path, description: str, build: Callable[[Path], None], log: Log) -> None:
    """Build `folder` once; a folder without its stamp (an interrupted build) is built again."""
    stamp = folder.with_name(folder.name + ".ok")
    if stamp.exists():
        return
    log.step(f"{description} (first run only)")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.monotonic()
    build(folder)
    stamp.write_text(f"built in {time.monotonic() - started:.0f} s\n", encoding="utf-8")


def apt_options(apt: Path, arch: str, as_root: bool) -> list[str]:
    """apt-get options for a private configuration under `apt`, leaving the system's alone."""
    options = [
        f"-oDir::Etc={apt / 'etc'}",
        f"-oDir::State={apt / 'state'}",
        f"-oDir::State::status={apt / 'status'}",
        f"-oDir::Cache={apt / 'cache'}",
        f"-oAPT::Architecture={arch}",
        f"-oAPT::Architectures={arch}",
        "-oDebug::NoLocking=1",
        "-qq",
    ]
    return [*options, "-oAPT::Sandbox::User=root"] if as_root else options


def apt_download(log: Log, mirror: str, suite: str, arch: str, package: str, folder: Path) -> Path:
    """Download one Debian package into `folder` with a private APT configuration; return the .deb."""
    apt = folder / "apt"
    for sub in APT_FOLDERS:
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "status").write_text("", encoding="utf-8")
    (apt / "etc" / "sources.list").write_text(
        f"deb [arch={arch} signed-by={KEYRING}] {mirror} {suite} main\n", encoding="utf-8"
    )
    options = apt_options(apt, arch, as_root=os.geteuid() == 0)
    log.run(["apt-get", *options, "update"])
    log.run(["apt-get", *options, "download", package], cwd=folder)
    shutil.rmtree(apt)
    (deb,) = folder.glob(f"{package}_*.deb")
    return deb


def debootstrap_command(tools: Path, folder: Path, mirror: str) -> list[str]:
    """debootstrap, unpacked under `tools`, downloading a minimal arm64 root with Python into `folder`.

    --download-only needs no root privileges; unpacking the packages is all the emulator needs.
    """
    return [
        str(tools / "usr" / "sbin" / "debootstrap"),
        "--download-only",
        "--arch=arm64",
        "--variant=minbase",
        "--include=python3",
        f"--keyring={KEYRING}",
        ROOT_SUITE,
        str(folder),
        mirror,
    ]


def _pip_install(x86_python: Path) -> list[str]:
    return [str(x86_python), "-m", "pip", "install", "--quiet"]


def wheels_command(x86_python: Path, target: Path, pins: list[str]) -> list[str]:
    """pip installing the aarch64 CPython 3.11 wheels of `pins` and their dependencies into `target`."""
    platforms = [option for tag in WHEEL_PLATFORMS for option in ("--platform", tag)]
    binary = ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", *platforms]
    return [*_pip_install(x86_python), *binary, "--target", str(target), *pins]


def package_command(x86_python: Path, target: Path, wheel: Path) -> list[str]:
    """pip installing the tumorscan `wheel` alone into `target` (it is pure Python)."""
    return [*_pip_install(x86_python), "--no-deps", "--target", str(target), str(wheel)]


class RootBuilder:
    """Builds what the emulator needs, from the Debian `mirror` and PyPI (through the x86 Python's pip)."""

    def __init__(self, emulator: Emulator, mirror: str, x86_python: Path, log: Log) -> None:
        self.emulator = emulator
        self.mirror = mirror
        self.x86_python = x86_python
        self.log = log

    def _build_qemu(self, folder: Path) -> None:
        deb = apt_download(self.log, self.mirror, QEMU_SUITE, "amd64", "qemu-user", folder)
        unpack = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        assert unpack.stdout is not None
        try:
            self.log.run(["tar", "-x", "-C", str(folder), "./usr/bin/qemu-aarch64"], stdin=unpack.stdout)
        finally:
            unpack.stdout.close()
            unpack.wait()
        if unpack.returncode != 0:
            raise CheckError(f"dpkg-deb could not unpack {deb}")
        deb.unlink()

    def _build_root(self, folder: Path) -> None:
        with tempfile.TemporaryDirectory(dir=self.emulator.cache) as tools_folder:
            tools = Path(tools_folder)
            debootstrap = apt_download(self.log, self.mirror, ROOT_SUITE, "all", "debootstrap", tools)
            self.log.run(["dpkg-deb", "-x", str(debootstrap), tools_folder])
            self.log.run(
                debootstrap_command(tools, folder, self.mirror),
                env={**os.environ, "DEBOOTSTRAP_DIR": str(tools / "usr" / "share" / "debootstrap")},
            )
        for package in sorted((folder / "var" / "cache" / "apt" / "archives").glob("*.deb")):
            self.log.run(["dpkg-deb", "-x", str(package), str(folder)])
            package.unlink()

    def prepare(self) -> None:
        """Build what is missing: qemu-aarch64 and the arm64 root."""
        qemu_folder = self.emulator.qemu.parents[2]
        build_once(qemu_folder, f"downloading qemu-user from Debian {QEMU_SUITE}", self._build_qemu, self.log)
        build_once(
            self.emulator.root, f"building a Debian {ROOT_SUITE} arm64 root", self._build_root, self.log
        )

    def install(self, wheel: Path, pins: list[str]) -> Emulator:
        """Install the dependencies (once per list of pins) and, fresh each run, the tumorscan wheel."""
        emulator = dataclasses.replace(self.emulator, pins=tuple(pins))

        def download(folder: Path) -> None:
            self.log.run(wheels_command(self.x86_python, folder, pins))

        build_once(emulator.site, f"installing aarch64 wheels: {' '.join(pins)}", download, self.log)
        shutil.rmtree(emulator.package, ignore_errors=True)
        self.log.run(package_command(self.x86_python, emulator.package, wheel))
        return emulator


def checkout_files(repo: Path) -> list[str]:
    """The checkout's files, tracked and not ignored, relative to `repo`."""
    listing = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
    )
    if listing.returncode != 0:
        raise CheckError(f"git cannot list the checkout's files: {listing.stderr.strip()}")
    # A tracked file deleted in the checkout is listed, but is not a file.
    return [name for name in listing.stdout.split("\0") if name and (repo / name).is_file()]


def build_wheel(repo: Path, x86_python: Path, folder: Path, log: Log) -> Path:
    """The wheel of the checkout's files, built from a copy of them in `folder`.

    The copy keeps leftovers of earlier builds in the checkout (build/) out of the wheel.
    """
    log.step("building the tumorscan wheel from the checkout")
    source = folder / "source"
    for name in checkout_files(repo):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, source / name)
    pip_wheel = [str(x86_python), "-m", "pip", "wheel", "--quiet", "--no-deps"]
    log.run([*pip_wheel, "--wheel-dir", str(folder), str(source)])
    (wheel,) = folder.glob("tumorscan-*.whl")
    return wheel


def requirement_names(metadata: str, extras: Iterable[str] = RUNTIME_EXTRAS) -> set[str]:
    """The distributions the Requires-Dist headers of a wheel's METADATA name, bare or for one of `extras`."""
    names = set()
    for line in HeaderParser().parsestr(metadata).get_all("Requires-Dist", []):
        requirement, _, marker = line.partition(";")
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if extra is None or extra.group(1) in extras:
            names.add(re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0])
    return names


def pinned(names: Iterable[str], versions: Mapping[str, str]) -> list[str]:
    """`name==version` for each name with a version (the bare name otherwise), sorted by name."""
    return [
        f"{name}=={versions[name]}" if name in versions else name for name in sorted(names, key=str.lower)
    ]


def runtime_pins(wheel: Path, x86_python: Path) -> list[str]:
    """The runtime's requirements (and its ONNX and DICOM extras'), pinned to the x86 Python's versions."""
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        names = requirement_names(archive.read(metadata).decode("utf-8"))
    return pinned(names, python_json(x86_python, PROBE_VERSIONS, *names))


def load_alignments(data: bytes) -> list[int] | None:
    """The alignment of each LOAD segment of a 64-bit little-endian ELF file (None: not such a file)."""
    if data[:6] != b"\x7fELF\x02\x01":
        return None
    (offset,) = struct.unpack_from("<Q", data, 0x20)
    size, number = struct.unpack_from("<HH", data, 0x36)
    headers = [offset + i * size for i in range(number)]
    pt_load = 1
    return [
        struct.unpack_from("<Q", data, header + 0x30)[0]
        for header in headers
        if struct.unpack_from("<I", data, header)[0] == pt_load
    ]


def shared_library_alignment(folders: list[Path]) -> tuple[int, int]:
    """(number of ELF shared libraries under the folders, the smallest alignment of their LOAD segments).

    A library loads on a kernel with P-byte pages only when its segments are aligned to P or more;
    the Raspberry Pi 5's kernel uses 16 KiB pages, which qemu-user on a 4 KiB host cannot emulate.
    """
    count, smallest = 0, 1 << 62
    for folder in folders:
        for path in sorted(folder.rglob("*.so*")):
            aligns = load_alignments(path.read_bytes() if path.is_file() else b"")
            if aligns is not None:
                count += 1
                smallest = min([smallest, *aligns])
    return count, smallest
