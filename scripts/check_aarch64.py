#!/usr/bin/env python3
"""Run tumor-infer on emulated Raspberry Pi CPUs and check its predictions against x86.

The Raspberry Pi 4 has Cortex-A72 cores, the Pi 5 Cortex-A76 cores (which add the dot-product
instructions that int8 kernels use). Both run Raspberry Pi OS bookworm (64-bit): Debian bookworm
arm64 with Python 3.11. This script builds, in a cache folder, a Debian bookworm arm64 root file
system, qemu-aarch64 and the manylinux aarch64 wheels of the runtime's dependencies (the versions
the x86 environment has), installs the wheel built from this checkout into it, runs the same
`tumor-infer --jsonl` command under qemu-aarch64 for each CPU, and compares with a native x86 run
(or an expectation file): the top-1 label must be identical and each probability within one
quantization step of the model's output (float outputs: 1e-4).

Needs: a Debian-based x86_64 host with apt-get, dpkg-deb and the Debian archive keyring, a Debian
mirror (default: the one in the system's APT sources) and PyPI, and a Python with tumorscan installed to
run it (it reads the records through `tumorscan.records`). No root privileges are needed.
Exit status: 0 all predictions match, 1 a mismatch, 2 the check could not run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tumorscan.errors import MetadataError
from tumorscan.records import RecordError, compare_records, output_tolerance, read_records
from tumorscan.sections import QuantizationSpec

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / ".cache" / "aarch64"
DEFAULT_SCANS = (
    REPO / "tests" / "data" / "mri" / "train",
    REPO / "tests" / "data" / "mri" / "test",
    REPO / "tests" / "data" / "dicom",
)
"""The sample MRI scans, and a JPEG Lossless and a JPEG-LS DICOM file (the [dicom] extra's decoders)."""
CPUS = {"cortex-a72": "Raspberry Pi 4", "cortex-a76": "Raspberry Pi 5"}
ROOT_SUITE = "bookworm"  # Raspberry Pi OS bookworm's base: Python 3.11, glibc 2.36
QEMU_SUITE = "trixie"  # qemu-user 10; bookworm's qemu-user 7.2 crashes in ai-edge-litert and onnxruntime
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
WHEEL_PLATFORMS = (
    "manylinux_2_28_aarch64",
    "manylinux_2_27_aarch64",
    "manylinux2014_aarch64",
    "manylinux_2_17_aarch64",
)
RUNTIME_EXTRAS = ("onnx", "dicom")
PI5_PAGE_SIZE = 16384
"""Raspberry Pi OS runs the Pi 5 with a 16 KiB page kernel; qemu-user on a 4 KiB host emulates 4 KiB pages."""
RUN_CLI = "from tumorscan.cli import infer_command; infer_command(prog_name='tumor-infer')"
PROBE_CPU = """
import platform, sys
info = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in open("/proc/cpuinfo"))}
print(platform.machine(), sys.version.split()[0], info["CPU part"], "asimddp" in info["Features"].split())
"""
PROBE_MODEL = """
import dataclasses, json, sys
from pathlib import Path
from tumorscan.metadata import read_model_spec
from tumorscan.sections import QuantizationSpec
path = Path(sys.argv[1])
quantization = read_model_spec(path).quantization
if path.suffix.lower() == ".tflite" and (quantization is None or quantization.output_dtype is None):
    from ai_edge_litert.interpreter import Interpreter
    detail = Interpreter(model_path=str(path)).get_output_details()[0]
    quantization = dataclasses.replace(
        quantization or QuantizationSpec(mode="unknown"),
        output_dtype=detail["dtype"].__name__,
        output_scale=float(detail["quantization"][0]) or None,
    )
print(json.dumps(quantization and quantization.to_dict()))
"""
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
PROBE_DEFAULT_MODEL = """
import json
from tumorscan.models import default_model_path
print(json.dumps(str(default_model_path())))
"""


class CheckError(Exception):
    """The check could not run (environment, build or tool failure)."""


@dataclass(frozen=True)
class EmulatedCpu:
    """What the emulated CPU tells the guest."""

    name: str
    python: str
    part: str
    dotprod: bool


class Log:
    """Progress to stderr; command output to a log file, whose end is shown when a command fails."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")
        self.path = path

    def step(self, text: str) -> None:
        print(f"» {text}", file=sys.stderr, flush=True)

    def run(self, command: list[str], **kwargs: Any) -> None:
        with self.path.open("a", encoding="utf-8") as log:
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, **kwargs).returncode
        if returncode != 0:
            tail = "\n".join(self.path.read_text(encoding="utf-8").splitlines()[-15:])
            raise CheckError(
                f"{Path(command[0]).name} failed (exit {returncode}); end of {self.path}:\n{tail}"
            )


def system_mirror() -> str | None:
    """The first Debian mirror in the system's APT sources with a release suite (not -security, -updates)."""
    apt = Path("/etc/apt")
    candidates: list[tuple[str, list[str]]] = []
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    candidates.append((words[1], [words[2]]))
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
            lines = (line.partition(":") for line in stanza.splitlines() if not line.startswith("#"))
            fields = {key.strip().lower(): value.strip() for key, _, value in lines}
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                candidates += [
                    (uri, fields.get("suites", "").split()) for uri in fields.get("uris", "").split()
                ]
    for uri, suites in candidates:
        if uri.rstrip("/").endswith("/debian") and any("-" not in suite for suite in suites):
            return uri.rstrip("/")
    return None


class Emulator:
    """The cached arm64 environment: qemu-aarch64, a bookworm arm64 root, aarch64 wheels."""

    def __init__(self, cache: Path, mirror: str, x86_python: Path, log: Log) -> None:
        self.cache = cache
        self.mirror = mirror
        self.x86_python = x86_python
        self.log = log
        self.qemu = cache / "qemu" / "usr" / "bin" / "qemu-aarch64"
        self.root = cache / "root"
        self.package = cache / "tumorscan"
        self.site = cache / "site"

    def _stage(self, folder: Path, description: str, build: Callable[[Path], None]) -> None:
        """Build `folder` once; a folder without its stamp (an interrupted build) is built again."""
        stamp = folder.with_name(folder.name + ".ok")
        if stamp.exists():
            return
        self.log.step(f"{description} (first run only)")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        started = time.monotonic()
        build(folder)
        stamp.write_text(f"built in {time.monotonic() - started:.0f} s\n", encoding="utf-8")

    def _apt_download(self, suite: str, arch: str, package: str, folder: Path) -> Path:
        """Download one package with a private APT configuration; the system's is left alone."""
        apt = folder / "apt"
        for sub in (
            "etc/sources.list.d",
            "etc/preferences.d",
            "state/lists/partial",
            "cache/archives/partial",
        ):
            (apt / sub).mkdir(parents=True, exist_ok=True)
        (apt / "status").write_text("", encoding="utf-8")
        (apt / "etc" / "sources.list").write_text(
            f"deb [arch={arch} signed-by={KEYRING}] {self.mirror} {suite} main\n", encoding="utf-8"
        )
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
        if os.geteuid() == 0:
            options.append("-oAPT::Sandbox::User=root")
        self.log.run(["apt-get", *options, "update"])
        self.log.run(["apt-get", *options, "download", package], cwd=folder)
        shutil.rmtree(apt)
        (deb,) = folder.glob(f"{package}_*.deb")
        return deb

    def _build_qemu(self, folder: Path) -> None:
        deb = self._apt_download(QEMU_SUITE, "amd64", "qemu-user", folder)
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
        with tempfile.TemporaryDirectory(dir=self.cache) as tools_folder:
            tools = Path(tools_folder)
            debootstrap = self._apt_download(ROOT_SUITE, "all", "debootstrap", tools)
            self.log.run(["dpkg-deb", "-x", str(debootstrap), tools_folder])
            # --download-only needs no root privileges; unpacking the packages is all the emulator needs.
            self.log.run(
                [
                    str(tools / "usr" / "sbin" / "debootstrap"),
                    "--download-only",
                    "--arch=arm64",
                    "--variant=minbase",
                    "--include=python3",
                    f"--keyring={KEYRING}",
                    ROOT_SUITE,
                    str(folder),
                    self.mirror,
                ],
                env={**os.environ, "DEBOOTSTRAP_DIR": str(tools / "usr" / "share" / "debootstrap")},
            )
        for package in sorted((folder / "var" / "cache" / "apt" / "archives").glob("*.deb")):
            self.log.run(["dpkg-deb", "-x", str(package), str(folder)])
            package.unlink()

    def prepare(self) -> None:
        """Build what is missing: qemu-aarch64 and the arm64 root."""
        self._stage(self.qemu.parents[2], f"downloading qemu-user from Debian {QEMU_SUITE}", self._build_qemu)
        self._stage(self.root, f"building a Debian {ROOT_SUITE} arm64 root", self._build_root)

    def install(self, wheel: Path, pins: list[str]) -> None:
        """Install the dependencies (once per list of pins) and, fresh each run, the tumorscan wheel."""
        key = hashlib.sha256("\n".join(sorted(pins)).encode("utf-8")).hexdigest()[:12]
        self.site = self.cache / f"site-{key}"
        platforms = [option for tag in WHEEL_PLATFORMS for option in ("--platform", tag)]
        pip = [str(self.x86_python), "-m", "pip", "install", "--quiet"]

        def download(folder: Path) -> None:
            binary = ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", *platforms]
            self.log.run([*pip, *binary, "--target", str(folder), *pins])

        self._stage(self.site, f"installing aarch64 wheels: {' '.join(pins)}", download)
        shutil.rmtree(self.package, ignore_errors=True)
        self.log.run([*pip, "--no-deps", "--target", str(self.package), str(wheel)])

    def command(self, cpu: str, *arguments: str) -> list[str]:
        """The command line running the arm64 Python 3.11 on an emulated `cpu`."""
        python = self.root / "usr" / "bin" / "python3.11"
        return [str(self.qemu), "-cpu", cpu, "-L", str(self.root), str(python), *arguments]

    def environment(self) -> dict[str, str]:
        """The guest's environment: the tumorscan wheel and the aarch64 wheels on its path."""
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV"}}
        env.update(PYTHONPATH=f"{self.package}{os.pathsep}{self.site}", PYTHONNOUSERSITE="1")
        return env

    def probe(self, cpu: str) -> EmulatedCpu:
        """Start the emulated Python on `cpu` and read back what the guest sees."""
        result = subprocess.run(self.command(cpu, "-c", PROBE_CPU), capture_output=True, text=True)
        if result.returncode != 0:
            raise CheckError(f"the emulated Python does not start on {cpu}:\n{result.stderr.strip()}")
        machine, python, part, dotprod = result.stdout.split()
        if machine != "aarch64":
            raise CheckError(f"the emulated Python runs on {machine}, not aarch64")
        return EmulatedCpu(cpu, python, part, dotprod == "True")

    def qemu_version(self) -> str:
        return subprocess.run([str(self.qemu), "--version"], capture_output=True, text=True).stdout.split()[2]


def python_json(python: Path, code: str, *arguments: str) -> Any:
    result = subprocess.run([str(python), "-c", code, *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        raise CheckError(f"{python}: {(result.stderr.strip().splitlines() or ['failed'])[-1]}")
    return json.loads(result.stdout)


def build_wheel(x86_python: Path, folder: Path, log: Log) -> Path:
    """The wheel of this checkout's files (tracked and not ignored), built from a copy of them.

    The copy keeps leftovers of earlier builds in the checkout (build/) out of the wheel.
    """
    log.step("building the tumorscan wheel from the checkout")
    listing = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
    )
    if listing.returncode != 0:
        raise CheckError(f"git cannot list the checkout's files: {listing.stderr.strip()}")
    source = folder / "source"
    for name in listing.stdout.split("\0"):
        if name and (REPO / name).is_file():  # a tracked file deleted in the checkout is not listed as a file
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    pip_wheel = [str(x86_python), "-m", "pip", "wheel", "--quiet", "--no-deps"]
    log.run([*pip_wheel, "--wheel-dir", str(folder), str(source)])
    (wheel,) = folder.glob("tumorscan-*.whl")
    return wheel


def shared_library_alignment(folders: list[Path]) -> tuple[int, int]:
    """(number of ELF shared libraries under the folders, the smallest alignment of their LOAD segments).

    A library loads on a kernel with P-byte pages only when its segments are aligned to P or more;
    the Raspberry Pi 5's kernel uses 16 KiB pages, which qemu-user on a 4 KiB host cannot emulate.
    """
    count, smallest = 0, 1 << 62
    for folder in folders:
        for path in sorted(folder.rglob("*.so*")):
            data = path.read_bytes() if path.is_file() else b""
            if data[:6] != b"\x7fELF\x02\x01":  # 64-bit little-endian ELF
                continue
            (offset,) = struct.unpack_from("<Q", data, 0x20)
            size, number = struct.unpack_from("<HH", data, 0x36)
            aligns = [
                struct.unpack_from("<Q", data, offset + i * size + 0x30)[0]
                for i in range(number)
                if struct.unpack_from("<I", data, offset + i * size)[0] == 1  # PT_LOAD
            ]
            count += 1
            smallest = min([smallest, *aligns])
    return count, smallest


def runtime_pins(wheel: Path, x86_python: Path) -> list[str]:
    """The runtime's requirements (and its ONNX and DICOM extras'), pinned to the x86 Python's versions."""
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode("utf-8")
    names = set()
    for line in text.splitlines():
        if line.startswith("Requires-Dist:"):
            requirement, _, marker = line.partition(":")[2].partition(";")
            extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
            if extra is None or extra.group(1) in RUNTIME_EXTRAS:
                names.add(re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0])
    versions = python_json(x86_python, PROBE_VERSIONS, *names)
    return [
        f"{name}=={versions[name]}" if name in versions else name for name in sorted(names, key=str.lower)
    ]


def scan_arguments(folders: list[Path]) -> list[str]:
    """The scan folders as tumor-infer arguments: relative to the repository (where it runs) when inside it.

    tumor-infer lists each folder itself, so both sides classify the same scans under the same names.
    """
    arguments = []
    for folder in folders:
        path = folder.resolve()
        if not path.is_dir():
            raise CheckError(f"{folder}: no such scan folder")
        arguments.append(str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path))
    return arguments


def infer(
    command: list[str], env: dict[str, str] | None, model: Path | None, scans: list[str], output: Path
) -> str:
    """Run tumor-infer (`model` None: the packaged one), keep its JSONL output in `output`, return it.

    Exit status 1 with records means that some scans failed: their error records are compared too.
    """
    model_option = ["--model", str(model)] if model else []
    result = subprocess.run(
        [*command, "-c", RUN_CLI, "--jsonl", "--no-progress", *model_option, *scans],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise CheckError(f"tumor-infer failed (exit {result.returncode}):\n{result.stderr.strip()}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(result.stdout, encoding="utf-8")
    return result.stdout


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="check_aarch64.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        type=Path,
        metavar="PATH",
        action="append",
        help="model (.tflite or .onnx) to check; repeat for several (default: the packaged model)",
    )
    parser.add_argument(
        "--scans",
        type=Path,
        metavar="FOLDER",
        action="append",
        help="scan folder; repeat for several (default: tests/data/mri/train and tests/data/mri/test)",
    )
    parser.add_argument("--cpu", choices=sorted(CPUS), action="append", help="emulated CPU (default: both)")
    parser.add_argument(
        "--expect",
        type=Path,
        metavar="FILE",
        help="compare with this tumor-infer --jsonl output (run from the repository root on the same "
        "folders) instead of a native x86 run; one model only",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        metavar="FOLDER",
        default=Path(os.environ.get("TUMORSCAN_AARCH64_CACHE", DEFAULT_CACHE)),
        help="folder for the arm64 environment and the results (default: $TUMORSCAN_AARCH64_CACHE or "
        ".cache/aarch64)",
    )
    parser.add_argument(
        "--mirror", metavar="URL", help="Debian mirror URL (default: the one in the system's APT sources)"
    )
    parser.add_argument(
        "--x86-python",
        type=Path,
        metavar="PYTHON",
        default=REPO / ".venv" / "bin" / "python",
        help="x86 Python with tumorscan installed: builds the wheel, runs the reference "
        "(default: .venv/bin/python)",
    )
    return parser.parse_args(argv)


def check_host(args: argparse.Namespace) -> str:
    """Fail early, before any download, when the host lacks something; return the Debian mirror."""
    if not args.x86_python.exists():
        raise CheckError(f"{args.x86_python}: no such Python; pass --x86-python")
    for tool in ("apt-get", "dpkg-deb", "tar"):
        if shutil.which(tool) is None:
            raise CheckError(f"{tool} not found: this check needs a Debian-based host")
    if not KEYRING.is_file():
        raise CheckError(f"{KEYRING} not found; apt-get install debian-archive-keyring")
    mirror: str | None = args.mirror or system_mirror()
    if mirror is None:
        raise CheckError("no Debian mirror in /etc/apt/sources.list(.d); pass --mirror URL")
    return mirror


def resolve_models(args: argparse.Namespace) -> dict[Path, Path | None]:
    """Each model file -> what to pass as --model (None: the packaged model, found by each side itself)."""
    if not args.model:
        return {Path(python_json(args.x86_python, PROBE_DEFAULT_MODEL)): None}
    models: dict[Path, Path | None] = {}
    for model in args.model:
        if not model.is_file():
            raise CheckError(f"{model}: no such model file")
        models[model.resolve()] = model.resolve()
    if args.expect is not None and len(models) != 1:
        raise CheckError("--expect holds one model's results: pass a single --model")
    return models


def check_model(
    args: argparse.Namespace,
    emulator: Emulator,
    cpus: list[EmulatedCpu],
    scans: list[str],
    path: Path,
    model: Path | None,
) -> bool:
    """Run one model natively (unless --expect) and on each CPU; print its table; True when all match."""
    results = args.cache.resolve() / "results" / path.name
    quantization = python_json(args.x86_python, PROBE_MODEL, str(path))
    tolerance, why = output_tolerance(
        None if quantization is None else QuantizationSpec.from_dict(quantization, str(path))
    )
    if args.expect:
        reference = read_records(args.expect.read_text(encoding="utf-8"), str(args.expect))
    else:
        x86 = infer([str(args.x86_python)], None, model, scans, results / "x86_64.jsonl")
        reference = read_records(x86, "x86_64")
    print(f"\nmodel {path.name}{'' if model else ' (packaged)'}: tolerance {tolerance:.6g} ({why})")
    print(
        f"  {'cpu':<11} {'board':<15} {'part':<6} {'dotprod':<8} {'scans':>5}  {'top-1 agree':>11}  "
        f"{'identical':>9}  {'max |Δp|':>9}  {'qemu time':>9}  result"
    )
    all_ok = True
    for cpu in cpus:
        started = time.monotonic()
        output = infer(
            emulator.command(cpu.name), emulator.environment(), model, scans, results / f"{cpu.name}.jsonl"
        )
        seconds = time.monotonic() - started
        outcome = compare_records(reference, read_records(output, cpu.name), tolerance)
        all_ok &= outcome.ok
        print(
            f"  {cpu.name:<11} {CPUS[cpu.name]:<15} {cpu.part:<6} {'yes' if cpu.dotprod else 'no':<8} "
            f"{outcome.scans:>5}  {f'{outcome.top1_agree}/{outcome.scans}':>11}  "
            f"{f'{outcome.identical}/{outcome.scans}':>9}  {outcome.max_diff:>9.2g}  {seconds:>8.0f}s  "
            f"{'match' if outcome.ok else 'MISMATCH'}"
        )
        for problem in outcome.problems:
            print(f"      {problem}")
    print(f"  results: {results}")
    return all_ok


def check(args: argparse.Namespace) -> int:
    started = time.monotonic()
    mirror = check_host(args)
    models = resolve_models(args)
    scans = scan_arguments(args.scans or list(DEFAULT_SCANS))
    emulator = Emulator(
        args.cache.resolve(), mirror, args.x86_python, Log(args.cache.resolve() / "setup.log")
    )
    emulator.prepare()
    with tempfile.TemporaryDirectory() as folder:
        wheel = build_wheel(args.x86_python, Path(folder), emulator.log)
        pins = runtime_pins(wheel, args.x86_python)
        emulator.install(wheel, pins)
    cpus = [emulator.probe(cpu) for cpu in dict.fromkeys(args.cpu or CPUS)]
    setup_seconds = time.monotonic() - started

    print(
        f"tumorscan on emulated Raspberry Pi CPUs: qemu-aarch64 {emulator.qemu_version()}, "
        f"Debian {ROOT_SUITE} arm64, Python {cpus[0].python}"
    )
    print(f"aarch64 wheels: {wheel.name}, {', '.join(pins)} (the x86 reference's versions)")
    print(f"reference: {args.expect or f'x86_64, native ({args.x86_python})'}")
    print(f"scans: every scan in {', '.join(scans)}")
    libraries, alignment = shared_library_alignment([emulator.site, emulator.package])
    aligned = alignment >= PI5_PAGE_SIZE
    print(
        f"shared libraries: {libraries}, LOAD segments aligned to {alignment // 1024} KiB or more: "
        f"{'' if aligned else 'NOT '}loadable with the Pi 5 kernel's {PI5_PAGE_SIZE // 1024} KiB pages"
    )
    all_ok = all([check_model(args, emulator, cpus, scans, path, model) for path, model in models.items()])
    print(
        f"\nset-up {setup_seconds:.0f} s, total {time.monotonic() - started:.0f} s "
        "(emulation times say nothing of a Pi's speed); "
        f"{'all predictions match' if all_ok else 'MISMATCH: predictions differ'}"
        f"{'' if aligned else '; a shared library cannot load with 16 KiB pages'}"
    )
    return 0 if all_ok and aligned else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    try:
        return check(args)
    except (CheckError, RecordError, MetadataError) as exc:
        print(f"check_aarch64: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
