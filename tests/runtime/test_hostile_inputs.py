"""Inputs a careful tester broke things with: each ends as one typed record, and the run goes on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from tumorscan import Classifier
from tumorscan.classifier import Prediction, PredictionError
from tumorscan.cli import infer_command


def _run(*args: str) -> Result:
    return CliRunner().invoke(infer_command, list(args), catch_exceptions=False)


def _codes(result: Result) -> dict[str, str]:
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return {Path(r["source"]).name: r["error"]["code"] if r["status"] == "error" else "ok" for r in records}


@pytest.fixture()
def scan(sample_test: Path) -> Path:
    return next(iter(sorted(sample_test.rglob("*.jpg"))))


@pytest.fixture()
def hostile_folder(scan: Path, tmp_path: Path) -> Path:
    """A folder with one good scan, link loops, a dangling link, a FIFO and a folder link back up."""
    folder = tmp_path / "hostile"
    folder.mkdir()
    shutil.copy(scan, folder / "good.jpg")
    (folder / "self.jpg").symlink_to("self.jpg")
    (folder / "ping.jpg").symlink_to("pong.jpg")
    (folder / "pong.jpg").symlink_to("ping.jpg")
    (folder / "gone.jpg").symlink_to("nowhere.jpg")
    os.mkfifo(folder / "pipe.jpg")
    (folder / "back").symlink_to("..")
    return folder


def test_a_file_name_too_long_is_one_record(tflite_fp32: Path, scan: Path, tmp_path: Path) -> None:
    long_name = str(tmp_path / ("x" * 300 + ".jpg"))
    results = Classifier.load(tflite_fp32).predict_many([scan, long_name, scan])
    assert [type(r) for r in results] == [Prediction, PredictionError, Prediction]
    assert isinstance(results[1], PredictionError) and results[1].code == "unreadable_file"
    assert "file name too long" in results[1].message
    cli = _run(str(scan), long_name, str(scan), "--model", str(tflite_fp32), "--jsonl")
    assert cli.exit_code == 1
    assert list(_codes(cli).values()).count("ok") == 1  # the scan, named twice: one key
    assert len(cli.stdout.splitlines()) == 3  # one record per input given, duplicates included


@pytest.mark.parametrize(
    ("array", "says"),
    [
        (np.zeros((0, 0), dtype=np.uint8), "is empty"),
        (np.zeros((0, 0, 3), dtype=np.float32), "is empty"),
        (np.full((8, 8), np.nan, dtype=np.float32), "not all finite"),
    ],
)
def test_degenerate_arrays_are_empty_image_errors(tflite_fp32: Path, array: np.ndarray, says: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        (result,) = Classifier.load(tflite_fp32).predict_many([array])
    assert isinstance(result, PredictionError) and result.code == "empty_image"
    assert says in result.message


def test_folder_walk_reports_every_entry_it_cannot_use(tflite_fp32: Path, hostile_folder: Path) -> None:
    result = _run(str(hostile_folder), "--model", str(tflite_fp32), "--jsonl")
    assert result.exit_code == 1
    assert _codes(result) == {
        "back": "link_loop",
        "gone.jpg": "dangling_link",
        "good.jpg": "ok",
        "ping.jpg": "link_loop",
        "pipe.jpg": "special_file",
        "pong.jpg": "link_loop",
        "self.jpg": "link_loop",
    }
    assert "(dangling_link: 1, link_loop: 4, special_file: 1)" in result.stderr


def test_entries_given_by_name_get_the_same_words(tflite_fp32: Path, hostile_folder: Path) -> None:
    names = ["self.jpg", "gone.jpg", "pipe.jpg", "absent.jpg"]
    result = _run(*(str(hostile_folder / name) for name in names), "--model", str(tflite_fp32), "--jsonl")
    assert _codes(result) == {
        "self.jpg": "link_loop",
        "gone.jpg": "dangling_link",
        "pipe.jpg": "special_file",
        "absent.jpg": "no_such_file",
    }
    assert "FIFO" in result.stdout and "'nowhere.jpg', which does not exist" in result.stdout


def test_output_symlink_is_written_through(tflite_fp32: Path, scan: Path, tmp_path: Path) -> None:
    target, link = tmp_path / "real.jsonl", tmp_path / "link.jsonl"
    target.write_text("old\n", encoding="utf-8")
    link.symlink_to(target.name)
    result = _run(str(scan), "--model", str(tflite_fp32), "--jsonl", "--output", str(link))
    assert result.exit_code == 0
    assert link.is_symlink() and json.loads(target.read_text(encoding="utf-8"))["status"] == "ok"


@pytest.mark.parametrize("special", ["/dev/null", "fifo"])
def test_output_special_files_are_refused(
    tflite_fp32: Path, scan: Path, tmp_path: Path, special: str
) -> None:
    if special == "fifo":
        special = str(tmp_path / "fifo")
        os.mkfifo(special)
    result = CliRunner().invoke(infer_command, [str(scan), "--model", str(tflite_fp32), "--output", special])
    assert result.exit_code == 2
    assert "not a regular file" in result.output and "Traceback" not in result.output
    assert Path("/dev/null").is_char_device()


def test_a_reader_that_goes_away_gets_no_traceback(tflite_fp32: Path, scan: Path) -> None:
    command = [sys.executable, "-m", "tumorscan", *[str(scan)] * 100, "--model", str(tflite_fp32), "--jsonl"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        assert json.loads(process.stdout.readline())["status"] == "ok"
        process.stdout.close()  # like `| head -1`
        errors = process.stderr.read().decode()
    assert process.returncode == 1 and "Traceback" not in errors


def test_output_dev_stdout_is_refused_and_left_alone(tflite_fp32: Path, scan: Path) -> None:
    was_link = Path("/dev/stdout").is_symlink()
    command = [sys.executable, "-m", "tumorscan", str(scan), "--model", str(tflite_fp32)]
    done = subprocess.run([*command, "--output", "/dev/stdout"], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "is a FIFO (named pipe), not a regular file" in done.stderr
    assert Path("/dev/stdout").is_symlink() == was_link


def test_a_failed_write_is_one_line_and_keeps_the_old_file(
    tflite_fp32: Path, scan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import tumorscan.files

    def disk_full(source: Path, target: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    output = tmp_path / "results.jsonl"
    output.write_text("old\n", encoding="utf-8")
    monkeypatch.setattr(tumorscan.files.os, "replace", disk_full)
    result = CliRunner().invoke(
        infer_command, [str(scan), "--model", str(tflite_fp32), "--jsonl", "--output", str(output)]
    )
    assert result.exit_code == 1 and "No space left on device" in result.output
    assert "Traceback" not in result.output and output.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]


def test_output_dash_is_standard_output(tflite_fp32: Path, scan: Path, tmp_path: Path) -> None:
    result = _run(str(scan), "--model", str(tflite_fp32), "--csv", "--output", "-")
    assert result.exit_code == 0
    assert result.stdout.startswith("source,status,") and len(result.stdout.splitlines()) == 2
    assert not (Path.cwd() / "-").exists()


def test_a_killed_run_leaves_its_finished_records(tflite_fp32: Path, scan: Path) -> None:
    command = [sys.executable, "-m", "tumorscan", *[str(scan)] * 400, "--model", str(tflite_fp32), "--jsonl"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as process:
        assert process.stdout is not None
        first = process.stdout.readline()  # arrives long before the 400th scan is classified
        process.kill()
        rest = process.stdout.read()
    assert json.loads(first)["status"] == "ok"
    assert len(rest.splitlines()) < 399


def test_a_file_given_three_times_gets_three_records(tflite_fp32: Path, scan: Path) -> None:
    result = _run(str(scan), str(scan), str(scan), "--model", str(tflite_fp32), "--csv")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 1 + 3
    assert "3 scans: 3 predicted, 0 failed" in result.stderr


def test_a_folder_with_a_non_numeric_dicom_attribute_keeps_its_other_records(
    tflite_fp32: Path, scan: Path, tmp_path: Path
) -> None:
    from pydicom import dcmread, examples

    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(scan, folder / "a.jpg")
    for name, attribute, value in (("b.dcm", "WindowCenter", "NaN!"), ("c.dcm", "NumberOfFrames", "x#1!")):
        dataset = dcmread(examples.get_path("mr"))
        dataset.add_new(attribute, "LO", value)
        dataset.save_as(folder / name)
    shutil.copy(examples.get_path("mr"), folder / "d.dcm")
    result = _run(str(folder), "--model", str(tflite_fp32), "--jsonl")
    assert _codes(result) == {
        "a.jpg": "ok",
        "b.dcm": "bad_dicom_attribute",
        "c.dcm": "bad_dicom_attribute",
        "d.dcm": "ok",
    }
