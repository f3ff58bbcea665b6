"""Running inside the arm64 environment: the emulated Python, what it sees; tumor-infer there or on x86."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .host import CheckError

CPUS = {"cortex-a72": "Raspberry Pi 4", "cortex-a76": "Raspberry Pi 5"}
"""The emulated CPUs and the boards that have them."""
RUN_CLI = "from tumorscan.cli import infer_command; infer_command(prog_name='tumor-infer')"
PROBE_CPU = """
import platform, sys
info = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in open("/proc/cpuinfo"))}
print(platform.machine(), sys.version.split()[0], info["CPU part"], "asimddp" in info["Features"].split())
"""
HIDDEN_VARIABLES = frozenset({"PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV"})
"""The host Python's settings, which the guest must not inherit."""


@dataclass(frozen=True)
class EmulatedCpu:
    """What the emulated CPU tells the guest."""

    name: str
    python: str
    part: str
    dotprod: bool


def parse_cpu_probe(cpu: str, stdout: str) -> EmulatedCpu:
    """PROBE_CPU's output on `cpu`: machine, Python version, CPU part, whether it has the dot product.

    Raises:
        CheckError: the output is not PROBE_CPU's, or the guest is not aarch64.
    """
    words = stdout.split()
    if len(words) != 4:
        raise CheckError(f"the emulated Python on {cpu} printed {stdout.strip()!r}, not its CPU")
    machine, python, part, dotprod = words
    if machine != "aarch64":
        raise CheckError(f"the emulated Python runs on {machine}, not aarch64")
    return EmulatedCpu(cpu, python, part, dotprod == "True")


def parse_qemu_version(stdout: str) -> str:
    """The version in `qemu-aarch64 --version`'s first line ("qemu-aarch64 version 10.0.3 (...)")."""
    words = stdout.split()
    if len(words) < 3 or words[1] != "version":
        raise CheckError(f"qemu-aarch64 --version printed {stdout.strip()!r}, not its version")
    return words[2]


def site_key(pins: tuple[str, ...]) -> str:
    """A short name for a list of pinned requirements, whatever their order."""
    return hashlib.sha256("\n".join(sorted(pins)).encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class Emulator:
    """The cached arm64 environment under `cache`, with the aarch64 wheels of `pins` installed."""

    cache: Path
    pins: tuple[str, ...] = ()

    @property
    def qemu(self) -> Path:
        return self.cache / "qemu" / "usr" / "bin" / "qemu-aarch64"

    @property
    def root(self) -> Path:
        """The Debian arm64 root file system."""
        return self.cache / "root"

    @property
    def package(self) -> Path:
        """The tumorscan wheel, installed fresh each run."""
        return self.cache / "tumorscan"

    @property
    def site(self) -> Path:
        """The aarch64 wheels of the dependencies, one folder per list of pins."""
        return self.cache / f"site-{site_key(self.pins)}"

    def command(self, cpu: str, *arguments: str) -> list[str]:
        """The command line running the arm64 Python 3.11 on an emulated `cpu`."""
        python = self.root / "usr" / "bin" / "python3.11"
        return [str(self.qemu), "-cpu", cpu, "-L", str(self.root), str(python), *arguments]

    def environment(self, host: Mapping[str, str] | None = None) -> dict[str, str]:
        """The `host` environment (default os.environ) with tumorscan and the wheels on the guest's path."""
        env = {k: v for k, v in (os.environ if host is None else host).items() if k not in HIDDEN_VARIABLES}
        env.update(PYTHONPATH=f"{self.package}{os.pathsep}{self.site}", PYTHONNOUSERSITE="1")
        return env

    def probe(self, cpu: str) -> EmulatedCpu:
        """Start the emulated Python on `cpu` and read back what the guest sees."""
        result = subprocess.run(self.command(cpu, "-c", PROBE_CPU), capture_output=True, text=True)
        if result.returncode != 0:
            raise CheckError(f"the emulated Python does not start on {cpu}:\n{result.stderr.strip()}")
        return parse_cpu_probe(cpu, result.stdout)

    def qemu_version(self) -> str:
        return parse_qemu_version(
            subprocess.run([str(self.qemu), "--version"], capture_output=True, text=True).stdout
        )


def scan_arguments(folders: list[Path], repo: Path) -> list[str]:
    """The scan folders as tumor-infer arguments: relative to `repo` (where it runs) when inside it.

    tumor-infer lists each folder itself, so both sides classify the same scans under the same names.
    """
    arguments = []
    for folder in folders:
        path = folder.resolve()
        if not path.is_dir():
            raise CheckError(f"{folder}: no such scan folder")
        arguments.append(str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path))
    return arguments


def infer_arguments(model: Path | None, scans: list[str]) -> list[str]:
    """What follows a Python's command line to run tumor-infer (`model` None: the packaged one)."""
    model_option = ["--model", str(model)] if model else []
    return ["-c", RUN_CLI, "--jsonl", "--no-progress", *model_option, *scans]


def infer(
    python: list[str],
    env: dict[str, str] | None,
    model: Path | None,
    scans: list[str],
    output: Path,
    repo: Path,
) -> str:
    """Run tumor-infer with the `python` command line in `repo`, keep its JSONL output in `output`, return it.

    Exit status 1 with records means that some scans failed: their error records are compared too.
    """
    result = subprocess.run(
        [*python, *infer_arguments(model, scans)], capture_output=True, text=True, cwd=repo, env=env
    )
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise CheckError(f"tumor-infer failed (exit {result.returncode}):\n{result.stderr.strip()}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(result.stdout, encoding="utf-8")
    return result.stdout
