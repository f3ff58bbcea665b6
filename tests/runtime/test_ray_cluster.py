"""A real two-node Ray cluster on the loopback: 2,000 sources give 2,000 records, each source once, also
when the worker node is killed mid-run (Ray retries its tasks) and when the driver is stopped and resumed.

Both nodes are `ray start` processes with one CPU each, on 127.0.0.1, in their own temporary folder; the
tests stop exactly the processes they started (found by that folder and by parent), never `ray stop`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None, reason="Ray is not installed: pip install '.[ray]'"
    ),
]

SOURCES, BAD = 2000, 20
RAY = str(Path(sys.executable).with_name("ray"))
INFER = str(Path(sys.executable).with_name("tumor-infer"))
ENVIRONMENT = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
"""A loopback test cluster: no token to hand around (a real cluster keeps Ray's token authentication)."""


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            found[int(entry.name)] = (parent, command)
    return found


def _with_descendants(roots: set[int]) -> set[int]:
    table = _processes()
    family = set(roots)
    while True:
        more = {pid for pid, (parent, _) in table.items() if parent in family} - family
        if not more:
            return family
        family |= more


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Cluster:
    """Two `ray start` nodes on the loopback, one CPU each; the worker node has a `worker_node` resource."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="tsray-", dir="/tmp")  # short: Ray's socket paths live in it
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--object-store-memory", "200000000"]
        self._start(
            "--head",
            "--port",
            str(self.port),
            "--temp-dir",
            self.folder,
            "--include-dashboard=false",
            *common,
        )
        self._start("--address", self.address, "--resources", '{"worker_node": 1}', *common)

    def _start(self, *arguments: str) -> None:
        done = subprocess.run(
            [RAY, "start", *arguments, "--disable-usage-stats"],
            capture_output=True, text=True, timeout=180, env=ENVIRONMENT,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr

    def _own(self) -> set[int]:
        """Every process of this cluster: those naming its folder, and their descendants."""
        return _with_descendants(
            {pid for pid, (_, command) in _processes().items() if self.folder in command}
        )

    def worker_node(self) -> set[int]:
        """The worker node's raylet and everything it started (its agents and actors)."""
        raylets = {p for p, (_, c) in _processes().items() if "raylet/raylet" in c and "worker_node" in c}
        assert len(raylets & self._own()) == 1
        return _with_descendants(raylets & self._own())

    def stop(self) -> None:
        _kill(self._own())
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = Cluster()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed sample scans repeated under new names up to 1,980, and 20 files that are not scans."""
    folder = tmp_path_factory.mktemp("archive")
    scans = sorted((Path(__file__).parents[1] / "data" / "mri").rglob("*.jpg"))
    for index in range(SOURCES - BAD):
        target = folder / f"site-{index % 7}" / f"scan-{index:05d}.jpg"
        target.parent.mkdir(exist_ok=True)
        os.link(scans[index % len(scans)], target)
    for index in range(BAD):
        (folder / f"bad-{index:02d}.png").write_bytes(b"\x89PNG broken" * index)
    return folder


def infer(*arguments: str | Path) -> subprocess.Popen[str]:
    command = [INFER, *map(str, arguments), "--engine", "ray", "--no-progress"]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENVIRONMENT
    )


def finish(process: subprocess.Popen[str], failed: bool = True) -> str:
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == int(failed), stderr  # 1: some of the 20 bad files were in this run
    assert "Traceback" not in stderr
    return stderr


def records(output: Path) -> list[dict[str, object]]:
    lines = [line for shard in sorted(output.glob("part-*.jsonl")) for line in shard.read_text().splitlines()]
    return [json.loads(line) for line in lines]


def assert_each_source_once(output: Path, sources: Path) -> None:
    found = records(output)
    names = [str(record["source"]) for record in found]
    assert len(names) == SOURCES and len(set(names)) == SOURCES
    assert set(names) == {str(p) for p in sources.rglob("*") if p.is_file()}
    assert sum(record["status"] == "error" for record in found) == BAD


def wait_for(condition: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_two_nodes_one_record_per_source(cluster: Cluster, sources: Path, tmp_path: Path) -> None:
    stderr = finish(infer(sources, "--ray-address", cluster.address, "--output", tmp_path / "out"))
    assert f"{SOURCES} scans: {SOURCES - BAD} predicted, {BAD} failed" in stderr
    assert "on Ray (2 nodes, 2 CPUs)" in stderr
    assert_each_source_once(tmp_path / "out", sources)


def test_worker_node_killed_mid_run(cluster: Cluster, sources: Path, tmp_path: Path) -> None:
    process = infer(sources, "--ray-address", cluster.address, "--output", tmp_path / "out")
    actors = lambda: any("ray::" in _processes().get(p, (0, ""))[1] for p in cluster.worker_node())  # noqa: E731
    wait_for(actors, 300)
    time.sleep(3)  # the worker node's actor is classifying
    assert process.poll() is None
    _kill(cluster.worker_node())
    stderr = finish(process)
    assert f"{SOURCES} scans" in stderr
    assert_each_source_once(tmp_path / "out", sources)


def test_driver_stopped_then_resumed(cluster: Cluster, sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = infer(sources, "--ray-address", cluster.address, "--output", out)
    wait_for(lambda: any(out.glob("part-*.jsonl")), 600)
    process.kill()
    process.wait()
    first = len(records(out))
    assert 0 < first < SOURCES
    bad_left = sum(record["status"] == "error" for record in records(out)) < BAD
    stderr = finish(infer(sources, "--ray-address", cluster.address, "--output", out, "--resume"), bad_left)
    assert f"{first} already recorded" in stderr
    assert_each_source_once(out, sources)
