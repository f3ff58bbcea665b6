"""What the check prints: the set-up, one table per model (a row per emulated CPU), the verdict."""

from __future__ import annotations

from pathlib import Path

from tumorscan.records import Comparison

from .guest import CPUS, EmulatedCpu
from .root import ROOT_SUITE

PI5_PAGE_SIZE = 16384
"""Raspberry Pi OS runs the Pi 5 with a 16 KiB page kernel; qemu-user on a 4 KiB host emulates 4 KiB pages."""
TABLE_HEADER = (
    f"  {'cpu':<11} {'board':<15} {'part':<6} {'dotprod':<8} {'scans':>5}  {'top-1 agree':>11}  "
    f"{'identical':>9}  {'max |Δp|':>9}  {'qemu time':>9}  result"
)


def reference_name(expect: Path | None, x86_python: Path) -> str:
    """What the emulated runs are compared with: the --expect file or the native x86 run."""
    return str(expect) if expect else f"x86_64, native ({x86_python})"


def setup_lines(
    qemu_version: str, python: str, wheel: str, pins: list[str], reference: str, scans: list[str]
) -> list[str]:
    """What ran: the emulator, the guest's Python, the wheels, the reference and the scans."""
    return [
        f"tumorscan on emulated Raspberry Pi CPUs: qemu-aarch64 {qemu_version}, "
        f"Debian {ROOT_SUITE} arm64, Python {python}",
        f"aarch64 wheels: {wheel}, {', '.join(pins)} (the x86 reference's versions)",
        f"reference: {reference}",
        f"scans: every scan in {', '.join(scans)}",
    ]


def loadable_on_pi5(alignment: int) -> bool:
    """Whether segments aligned to `alignment` bytes load with the Pi 5 kernel's pages."""
    return alignment >= PI5_PAGE_SIZE


def alignment_line(libraries: int, alignment: int) -> str:
    return (
        f"shared libraries: {libraries}, LOAD segments aligned to {alignment // 1024} KiB or more: "
        f"{'' if loadable_on_pi5(alignment) else 'NOT '}loadable with the Pi 5 kernel's "
        f"{PI5_PAGE_SIZE // 1024} KiB pages"
    )


def model_heading(name: str, packaged: bool, tolerance: float, why: str) -> list[str]:
    """A blank line, the model's name and tolerance, and the table's header."""
    return [
        "",
        f"model {name}{' (packaged)' if packaged else ''}: tolerance {tolerance:.6g} ({why})",
        TABLE_HEADER,
    ]


def table_rows(cpu: EmulatedCpu, outcome: Comparison, seconds: float) -> list[str]:
    """One CPU's row of the table, then each problem found on its run."""
    row = (
        f"  {cpu.name:<11} {CPUS[cpu.name]:<15} {cpu.part:<6} {'yes' if cpu.dotprod else 'no':<8} "
        f"{outcome.scans:>5}  {f'{outcome.top1_agree}/{outcome.scans}':>11}  "
        f"{f'{outcome.identical}/{outcome.scans}':>9}  {outcome.max_diff:>9.2g}  {seconds:>8.0f}s  "
        f"{'match' if outcome.ok else 'MISMATCH'}"
    )
    return [row, *(f"      {problem}" for problem in outcome.problems)]


def results_line(results: Path) -> str:
    """Where the runs' JSONL outputs are kept."""
    return f"  results: {results}"


def summary_lines(setup_seconds: float, total_seconds: float, all_ok: bool, aligned: bool) -> list[str]:
    """A blank line and the verdict, with the times."""
    return [
        "",
        f"set-up {setup_seconds:.0f} s, total {total_seconds:.0f} s "
        "(emulation times say nothing of a Pi's speed); "
        f"{'all predictions match' if all_ok else 'MISMATCH: predictions differ'}"
        f"{'' if aligned else '; a shared library cannot load with 16 KiB pages'}",
    ]
