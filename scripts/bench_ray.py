"""Plain tumor-infer against tumor-infer --engine ray on the same archive: time, throughput, memory, records.

Builds a temporary archive from a folder of scans (repeated under new names up to --count, plus --bad files
that are not scans), then runs, each in its own process and in turn:
plain `tumor-infer ARCHIVE --jsonl --output FILE`; `tumor-infer ARCHIVE --engine ray --output DIR` (a local
Ray started for the run, its start-up included); and `--engine ray` on --fixed-scans scans only, whose time is
Ray's fixed cost (start-up, actors, model loads). Memory: the peak RSS (VmHWM) of the plain process, of the
Ray driver and of each Ray actor, read from /proc while they run. Prints a table; exit status 1 when the
two runs' records differ.

    python scripts/bench_ray.py ../shared/data/brain-tumor-mri/Testing --count 2000 --bad 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def make_archive(scans: Path, folder: Path, count: int, bad: int) -> int:
    """`count - bad` links to the scans under new names in a few site folders, and `bad` broken files."""
    found = sorted(p for p in scans.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for index in range(count - bad):
        target = folder / f"site-{index % 7}" / f"scan-{index:06d}{found[index % len(found)].suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(found[index % len(found)], target)
    for index in range(bad):
        (folder / f"bad-{index:03d}.jpg").write_bytes(b"\xff\xd8 not a scan" * index)
    return count


def _peak_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakWatcher(threading.Thread):
    """Samples the peak RSS of a process and of every Ray actor (`ray::MapWorker...`) while it runs."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.driver, self.actors = pid, 0, dict[int, int]()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            self.driver = max(self.driver, _peak_kib(self.pid))
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        command = (entry / "cmdline").read_bytes()
                    except OSError:
                        continue
                    if command.startswith(b"ray::MapWorker"):
                        pid = int(entry.name)
                        self.actors[pid] = max(self.actors.get(pid, 0), _peak_kib(pid))


def timed(command: list[str]) -> tuple[float, int, list[int]]:
    """(seconds, peak RSS KiB of the process, peak RSS KiB of each Ray actor)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watcher = PeakWatcher(process.pid)
    watcher.start()
    _, stderr = process.communicate()
    seconds = time.perf_counter() - started
    watcher.stopped.set()
    watcher.join()
    if process.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr}")
    print(stderr.strip().splitlines()[-1], file=sys.stderr)
    return seconds, watcher.driver, sorted(watcher.actors.values())


def records(path: Path) -> list[str]:
    files = sorted(path.glob("part-*.jsonl")) if path.is_dir() else [path]
    return sorted(line for file in files for line in file.read_text().splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scans", type=Path, help="a folder of scans to repeat (e.g. the dataset's Testing)")
    parser.add_argument("--count", type=int, default=2000, help="sources in the archive (default 2000)")
    parser.add_argument("--bad", type=int, default=20, help="of which broken files (default 20)")
    parser.add_argument("--fixed-scans", type=int, default=8, help="scans of the fixed-cost run (default 8)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each, medians reported (default 1)")
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        archive, small = folder / "archive", folder / "small"
        make_archive(options.scans, archive, options.count, options.bad)
        make_archive(options.scans, small, options.fixed_scans, 0)
        plain, ray, fixed = [], [], []
        for index in range(options.rounds):
            plain.append(
                timed(
                    [
                        str(BIN / "tumor-infer"),
                        str(archive),
                        "--jsonl",
                        "--output",
                        str(folder / "plain.jsonl"),
                    ]
                )
            )
            out = folder / f"ray-{index}"
            ray.append(
                timed([str(BIN / "tumor-infer"), str(archive), "--engine", "ray", "--output", str(out)])
            )
            fixed.append(
                timed(
                    [
                        str(BIN / "tumor-infer"),
                        str(small),
                        "--engine",
                        "ray",
                        "--output",
                        str(folder / f"f{index}"),
                    ]
                )
            )
        same = records(folder / "plain.jsonl") == records(folder / "ray-0")
        report(options, plain, ray, fixed, same)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    sys.exit(0 if same else 1)


Run = tuple[float, int, list[int]]


def _mib(kib: float) -> str:
    return f"{kib / 1024:.0f}"


def report(
    options: argparse.Namespace, plain: list[Run], ray: list[Run], fixed: list[Run], same: bool
) -> None:
    cores, count = os.cpu_count() or 1, options.count
    p, r, f = (statistics.median(run[0] for run in runs) for runs in (plain, ray, fixed))
    actors = [kib for run in ray for kib in run[2]]
    plain_rss, driver_rss = max(run[1] for run in plain), max(run[1] for run in ray)
    print(f"{count} sources ({options.bad} broken), {cores} cores, median of {options.rounds} round(s)")
    print("| run | seconds | scans/s | scans/s per core | peak RSS (MiB) |")
    print("|---|---|---|---|---|")
    print(f"| plain tumor-infer | {p:.1f} | {count / p:.0f} | {count / p / cores:.0f} | {_mib(plain_rss)} |")
    memory = f"driver {_mib(driver_rss)}, actors {', '.join(_mib(k) for k in actors) or '-'}"
    print(
        f"| --engine ray, start-up included | {r:.1f} | {count / r:.0f} | {count / r / cores:.0f} "
        f"| {memory} |"
    )
    steady = count / max(r - f, 1e-9)
    print(f"| --engine ray on {options.fixed_scans} scans (Ray's fixed cost) | {f:.1f} | | | |")
    print(f"| --engine ray less its fixed cost | {r - f:.1f} | {steady:.0f} | {steady / cores:.0f} | |")
    print(f"ray / plain: {r / p:.2f}x (target at most 1.5x); less the fixed cost {(r - f) / p:.2f}x")
    if actors:
        print(f"largest actor / plain process peak RSS: {max(actors) / plain_rss:.2f}x (target at most 1.5x)")
    print(f"records identical (sorted lines): {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
