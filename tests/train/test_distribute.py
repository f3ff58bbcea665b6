"""Training on several workers and devices: TF_CONFIG, shards, two real workers, two logical CPUs.

The two-worker and two-device runs start real processes (a strategy must be created before TensorFlow runs
anything) and are slow. Their results are compared with a one-worker run of the same seed and global batch:
the weights start identical and every global batch holds the same scans, but each replica draws its own
dropout masks (CNN2 drops 25% of its features), so the runs cannot agree bit for bit. Measured here, 2 epochs
at 32x32 with a global batch of 8: per-epoch loss and validation loss differed by at most 0.025; a tolerance
of 0.1 on a loss near 1.4 leaves a 4x margin and still fails a run that does not train one model together.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tumorscan.errors import TumorscanError
from tumorscan.train.cli import train_command
from tumorscan.train.data import load_dataset, make_dataset
from tumorscan.train.distribute import read_tf_config

TINY = ["--arch", "cnn2", "--size", "32", "--batch-size", "8", "--no-audit", "--augment", "none"]
TINY += ["--epochs", "2"]
TOLERANCE = 0.1
TRAIN = [sys.executable, "-c", "from tumorscan.train.cli import train_command; train_command()"]


def tf_config(ports: list[int], index: int) -> str:
    workers = [f"localhost:{port}" for port in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "needs the TF_CONFIG environment variable"),
        ("{not json", "TF_CONFIG is not valid JSON"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}}', "TF_CONFIG has no task"),
        ('{"task": {"type": "worker", "index": 0}}', "no cluster.worker list"),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
            "index 1 is out of range",
        ),
    ],
)
def test_bad_tf_config_is_one_line_and_exit_1(
    text: str | None, message: str, sample_train: Path, tmp_path: Path
) -> None:
    with pytest.raises(TumorscanError, match=message):
        read_tf_config(text)
    env = {"TF_CONFIG": text}
    args = [*TINY, "--data", str(sample_train), "--out", str(tmp_path / "run"), "--strategy", "multiworker"]
    result = CliRunner().invoke(train_command, args, env=env)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and message in result.output, result.output


def test_tf_config_names_the_workers_and_this_task() -> None:
    assert read_tf_config(tf_config([1, 2], 1)) == (["localhost:1", "localhost:2"], 1)


def test_shards_split_every_batch_and_read_only_their_rows(sample_train: Path, tmp_path: Path) -> None:
    scans = load_dataset(sample_train, (32, 32), tmp_path / "cache", progress=False)
    rows = np.arange(len(scans), dtype=np.int64)
    whole = [labels for _, labels in make_dataset(scans, rows, 8, shuffle_seed=3).as_numpy_iterator()]
    parts = [
        [
            labels
            for _, labels in make_dataset(scans, rows, 8, shuffle_seed=3, shard=(i, 2)).as_numpy_iterator()
        ]
        for i in range(2)
    ]
    assert len(whole) == len(parts[0]) == len(parts[1]) == 3
    for batch, first, second in zip(whole, *parts, strict=True):
        assert len(first) == len(second) == len(batch) // 2
        np.testing.assert_array_equal(np.concatenate([first, second]), batch)


def _history(out: Path) -> dict[str, list[float]]:
    return dict(json.loads((out / "history.json").read_text(encoding="utf-8")))


def _assert_equivalent(run: Path, reference: Path) -> None:
    got, expected = _history(run), _history(reference)
    for key in ("loss", "val_loss"):
        assert np.max(np.abs(np.array(got[key]) - np.array(expected[key]))) <= TOLERANCE, (key, got, expected)


def _train(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TRAIN, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def one_worker(sample_train: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the same run on one worker, default strategy."""
    out = tmp_path_factory.mktemp("one") / "run"
    done = _train([*TINY, "--data", str(sample_train), "--out", str(out)], dict(os.environ))
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.slow
def test_two_workers_train_one_model(sample_train: Path, tmp_path: Path, one_worker: Path) -> None:
    ports = free_ports(2)
    out, scratch = tmp_path / "run", tmp_path / "scratch"
    scratch.mkdir()
    args = [*TINY, "--data", str(sample_train), "--out", str(out), "--strategy", "multiworker"]
    workers = [
        subprocess.Popen(
            [*TRAIN, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TF_CONFIG": tf_config(ports, index), "TMPDIR": str(scratch)},
        )
        for index in range(2)
    ]
    outputs = [worker.communicate(timeout=240) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr
    assert "Worker done after 2 epochs" in outputs[1][0]
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["strategy"] == {"name": "multiworker", "replicas": 2}
    assert {"model.keras", "report.json", "learning_curves.png", "confusion_matrix.png"} <= {
        path.name for path in out.iterdir()
    }
    assert list(scratch.iterdir()) == []  # the other worker removed its temporary run folder
    epochs = [[line for line in stderr.splitlines() if line.startswith("epoch ")] for _, stderr in outputs]
    assert [line.split(" [")[0] for line in epochs[0]] == [line.split(" [")[0] for line in epochs[1]]
    _assert_equivalent(out, one_worker)


@pytest.mark.slow
def test_a_worker_whose_peers_never_come_up_stops_with_one_line(sample_train: Path, tmp_path: Path) -> None:
    env = {**os.environ, "TF_CONFIG": tf_config(free_ports(2), 0), "TUMORSCAN_PEER_TIMEOUT": "5"}
    args = [*TINY, "--data", str(sample_train), "--out", str(tmp_path / "run"), "--strategy", "multiworker"]
    done = _train(args, env, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith("Error: worker 0 could not join the workers of TF_CONFIG")


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_one_device(
    sample_train: Path, tmp_path: Path, one_worker: Path
) -> None:
    """Two logical CPU devices stand in for two GPUs."""
    code = (
        "import tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "from tumorscan.train.cli import train_command\ntrain_command()"
    )
    out = tmp_path / "run"
    args = [*TINY, "--data", str(sample_train), "--out", str(out), "--strategy", "mirrored"]
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["strategy"] == {"name": "mirrored", "replicas": 2}
    _assert_equivalent(out, one_worker)


@pytest.mark.slow
def test_a_killed_worker_stops_the_other_and_a_rerun_resumes(sample_train: Path, tmp_path: Path) -> None:
    ports, out = free_ports(2), tmp_path / "run"
    args = [*TINY, "--epochs", "8", "--patience", "8", "--data", str(sample_train), "--out", str(out)]
    args += ["--strategy", "multiworker"]

    def start(extra: list[str]) -> list[subprocess.Popen[str]]:
        return [
            subprocess.Popen(
                [*TRAIN, *args, *extra],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "TF_CONFIG": tf_config(ports, index)},
            )
            for index in range(2)
        ]

    chief, other = start([])
    state = out / "checkpoints" / "state.json"
    deadline = time.monotonic() + 180
    while not (state.is_file() and json.loads(state.read_text(encoding="utf-8"))["epoch"] >= 1):
        assert time.monotonic() < deadline and chief.poll() is None, "no checkpoint of epoch 2"
        time.sleep(0.5)
    other.kill()
    other.communicate()
    _, stderr = chief.communicate(timeout=120)  # the heartbeat deadline is 10 s
    assert chief.returncode == 1, stderr[-3000:]
    assert "another worker stopped answering" in stderr.splitlines()[-1], stderr[-3000:]
    completed = json.loads(state.read_text(encoding="utf-8"))["epoch"] + 1
    assert completed < 8
    workers = start(["--resume"])
    for worker in workers:
        _, stderr = worker.communicate(timeout=240)
        assert worker.returncode == 0, stderr
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["status"] == "finished" and run["resumed_after_epoch"] == completed and run["epochs_run"] == 8
