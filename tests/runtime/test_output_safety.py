"""What tumor-infer writes: names that cannot forge rows or formulas, files it must not destroy, no litter."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from tumorscan import Classifier
from tumorscan.classifier import Prediction
from tumorscan.cli import _results, infer_command
from tumorscan.errors import ModelError
from tumorscan.heatmaps import MAX_NAME_BYTES, write_heatmaps

HOSTILE_NAMES = [
    '=HYPERLINK("x";"y").jpg',
    "+1.jpg",
    "-2.jpg",
    "@x.jpg",
    "\tstarts_with_tab.jpg",
    "\rstarts_with_cr.jpg",
    "new\nline.jpg",
    "\x1b[31mred\x1b[0m.jpg",
    "bidi\u202egpj.jpg",
]


def _run(*args: str) -> Result:
    return CliRunner().invoke(infer_command, list(args), catch_exceptions=False)


@pytest.fixture()
def scan(sample_test: Path) -> Path:
    return next(iter(sorted(sample_test.rglob("*.jpg"))))


@pytest.fixture()
def hostile(scan: Path, tmp_path: Path) -> list[Path]:
    """Copies of one scan under names that could forge rows, formulas or terminal colours."""
    folder = tmp_path / "hostile"
    folder.mkdir()
    paths = [folder / name for name in HOSTILE_NAMES]
    for path in paths:
        shutil.copy(scan, path)
    return paths


def test_csv_keeps_one_row_per_input_and_no_formula(tflite_fp32: Path, hostile: list[Path]) -> None:
    result = _run("--model", str(tflite_fp32), "--csv", "--", *map(str, hostile))
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1 + len(hostile)  # no row split by a newline or carriage return
    rows = list(csv.reader(io.StringIO(result.stdout, newline="")))
    assert len(rows) == 1 + len(hostile)
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
            assert cell.isprintable(), cell
    sources = [row[0] for row in rows[1:]]
    assert any("\\x1b[31mred" in source for source in sources) and any("new\\nline" in s for s in sources)


def test_formula_names_are_neutralised_in_csv(
    tflite_fp32: Path, hostile: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(hostile[0].parent)  # relative names: the cell starts with the name itself
    names = [path.name for path in hostile]
    result = _run("--model", str(tflite_fp32), "--csv", "--", *names)
    rows = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    assert [row["source"] for row in rows[:4]] == ["'" + name for name in names[:4]]
    assert rows[4]["source"] == "'\\tstarts_with_tab.jpg" and rows[5]["source"] == "'\\rstarts_with_cr.jpg"
    assert all(row["status"] == "ok" for row in rows)


def test_table_shows_escapes_and_one_line_per_scan(tflite_fp32: Path, hostile: list[Path]) -> None:
    result = _run("--model", str(tflite_fp32), "--", *map(str, hostile))
    lines = result.stdout.split("\n")
    assert lines[-1] == "" and len(lines) == 1 + len(hostile) + 2  # header, rows, summary, final newline
    assert "\x1b" not in result.stdout and "\r" not in result.stdout and "\u202e" not in result.stdout
    assert "\\x1b[31mred" in result.stdout and "bidi\\u202egpj" in result.stdout


def test_wide_labels_and_names_stay_aligned(tflite_fp32: Path, scan: Path, tmp_path: Path) -> None:
    wide = tmp_path / "脳腫瘍の画像.jpg"
    shutil.copy(scan, wide)
    result = _run("--model", str(tflite_fp32), str(wide), str(scan))
    header, first, second = result.stdout.splitlines()[:3]
    from tumorscan.names import display_width

    column = display_width(header[: header.index("LABEL")])
    assert display_width(first[: first.index("  ") + 2].rstrip()) < column
    label_start = [display_width(line.split("  ")[0]) for line in (first, second)]
    assert all(start < column for start in label_start)
    for line in (first, second):  # the label column starts at the same display column on every row
        name_end = line.index(" ")
        rest = line[name_end:]
        assert display_width(line[:name_end]) + len(rest) - len(rest.lstrip()) == column


def test_names_that_are_not_utf8_are_told_apart(tflite_fp32: Path, scan: Path, tmp_path: Path) -> None:
    raw = tmp_path / os.fsdecode(b"bad_utf8_\xff\xfe.jpg")
    lookalikes = [raw, tmp_path / "bad_utf8_\\udcff\\udcfe.jpg", tmp_path / "bad_utf8_\\xff\\xfe.jpg"]
    for path in lookalikes:
        shutil.copy(scan, path)
    result = _run("--model", str(tflite_fp32), "--jsonl", *map(str, lookalikes))
    records = [json.loads(line) for line in result.stdout.splitlines()]
    keys = {(r["source"], r.get("source_not_utf8", False)) for r in records}
    assert len(keys) == 3
    assert records[0]["source"].endswith("bad_utf8_\\xff\\xfe.jpg") and records[0]["source_not_utf8"] is True
    assert "source_not_utf8" not in records[1] and "source_not_utf8" not in records[2]
    rows = list(csv.DictReader(io.StringIO(_run("--model", str(tflite_fp32), "--csv", str(raw)).stdout)))
    assert rows[0]["source_not_utf8"] == "True"


@pytest.mark.parametrize("what", ["scan", "model", "second scan"])
def test_output_that_is_an_input_or_the_model_is_refused(
    tflite_fp32: Path, scan: Path, tmp_path: Path, what: str
) -> None:
    model, first, second = tmp_path / "model.tflite", tmp_path / "scan.jpg", tmp_path / "scan2.jpg"
    shutil.copy(tflite_fp32, model)
    shutil.copy(scan, first)
    shutil.copy(scan, second)
    target = {"scan": first, "model": model, "second scan": tmp_path / "link.jpg"}[what]
    if what == "second scan":
        target.symlink_to(second.name)  # another name for the second input
    before = {path: path.read_bytes() for path in (model, first, second)}
    result = _run("--model", str(model), "--jsonl", "--output", str(target), str(first), str(second))
    assert result.exit_code == 2 and "would destroy it" in result.output
    assert {path: path.read_bytes() for path in before} == before


def test_read_only_output_is_respected(tflite_fp32: Path, scan: Path, tmp_path: Path) -> None:
    target = tmp_path / "res.jsonl"
    target.write_text("keep\n", encoding="utf-8")
    target.chmod(0o444)
    result = _run("--model", str(tflite_fp32), "--jsonl", "--output", str(target), str(scan))
    assert result.exit_code == 2 and "read-only" in result.output
    assert target.read_text(encoding="utf-8") == "keep\n" and target.stat().st_mode & 0o777 == 0o444


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_a_write_leaves_no_partial(tmp_path: Path, signal_number: int) -> None:
    target = tmp_path / "res.jsonl"
    target.write_text("old\n", encoding="utf-8")
    code = (
        "import os, sys; from pathlib import Path; from tumorscan.files import atomic_text_writer\n"
        f"with atomic_text_writer(Path({str(target)!r})) as out:\n"
        f"    out.write('half'); out.flush(); os.kill(os.getpid(), {int(signal_number)})\n"
    )
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert process.returncode == 128 + signal_number, process.stderr
    assert target.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.jsonl"]


def test_stale_partials_of_killed_runs_are_removed(tflite_fp32: Path, scan: Path, tmp_path: Path) -> None:
    target = tmp_path / "res.jsonl"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    stale = tmp_path / f".res.jsonl.{int(dead.stdout)}-0123abcd.partial"
    alive = tmp_path / f".res.jsonl.{os.getpid()}-0123abcd.partial"  # a run still going: left alone
    other = tmp_path / f".other.jsonl.{int(dead.stdout)}-0123abcd.partial"
    for path in (stale, alive, other):
        path.write_text("half", encoding="utf-8")
    result = _run("--model", str(tflite_fp32), "--jsonl", "--output", str(target), str(scan))
    assert result.exit_code == 0
    assert not stale.exists() and alive.exists() and other.exists()


def test_each_heatmap_failure_costs_one_heatmap(
    tflite_fp32: Path, scan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    raw = folder / os.fsdecode(b"bad_\xff.jpg")
    long = folder / ("x" * 250 + ".jpg")
    replaced = folder / "replaced.jpg"
    for path in (raw, long, replaced):
        shutil.copy(scan, path)
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "0002_in_replaced.png").write_bytes(b"the user's own file")
    classifier = Classifier.load(tflite_fp32)
    done = list(_results(classifier, [raw, long, replaced], keep_pixels=True))
    replaced.write_bytes(b"not an image any more")  # after its record: the map shows what was classified
    assert write_heatmaps(classifier, done, maps) is False
    names = sorted(p.name for p in maps.iterdir())
    assert len(names) == 4 and all(len(name.encode()) <= MAX_NAME_BYTES for name in names)
    assert (maps / "0002_in_replaced.png").read_bytes() == b"the user's own file"
    assert "0002_in_replaced-1.png" in names and "heatmaps: 3 written" in capsys.readouterr().err


def test_a_heatmap_that_cannot_be_written_is_reported_and_the_rest_go_on(
    tflite_fp32: Path, scan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    classifier = Classifier.load(tflite_fp32)
    done = list(_results(classifier, [scan, scan], keep_pixels=True))
    maps = tmp_path / "maps"
    maps.mkdir()
    calls = []
    real = classifier.explain

    def flaky(pixels: np.ndarray, label: str | None = None) -> np.ndarray:
        calls.append(label)
        if len(calls) == 1:
            raise ModelError("model.tflite: inference failed (simulated).")
        return real(pixels, label)

    classifier.explain = flaky  # type: ignore[method-assign]
    assert write_heatmaps(classifier, done, maps) is True
    err = capsys.readouterr().err
    assert "failed: model.tflite: inference failed" in err and "1 written" in err and "1 failed" in err
    assert len(list(maps.iterdir())) == 1


def test_a_model_that_cannot_run_is_a_usage_error(
    tflite_fp32: Path, scan: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tumorscan.backends.tflite import TFLiteBackend

    def broken(self: TFLiteBackend, pixels: np.ndarray) -> None:
        raise ModelError(f"{tflite_fp32}: inference failed (Input tensor 4 lacks data).")

    monkeypatch.setattr(TFLiteBackend, "run_with_distance", broken)
    with pytest.raises(ModelError, match="lacks data"):
        Classifier.load(tflite_fp32)  # found at load, before any scan
    result = _run("--model", str(tflite_fp32), "--jsonl", str(scan), str(scan))
    assert result.exit_code == 2 and "lacks data" in result.output


def test_a_model_failing_mid_run_exits_2(
    tflite_fp32: Path, scan: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(self: Classifier, sources: object, batch_size: int = 16) -> object:
        raise ModelError(f"{tflite_fp32}: inference failed (simulated).")
        yield

    monkeypatch.setattr(Classifier, "iter_with_pixels", failing)
    result = _run("--model", str(tflite_fp32), "--jsonl", str(scan))
    assert result.exit_code == 2 and "inference failed (simulated)" in result.output


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_flat_arrays_follow_one_rule(tflite_fp32: Path, dtype: type) -> None:
    classifier = Classifier.load(tflite_fp32)
    for shape in ((16, 16), (16, 16, 3)):
        result = classifier.predict_many([np.full(shape, 7, dtype=dtype)])[0]
        assert isinstance(result, Prediction), result


def test_dicom_is_recognised_by_content_whatever_its_name(
    tflite_fp32: Path, scan: Path, tmp_path: Path
) -> None:
    from pydicom.data import get_testdata_file

    folder = tmp_path / "pacs"
    folder.mkdir()
    shutil.copy(str(get_testdata_file("MR_small.dcm")), folder / "IM000001")
    shutil.copy(str(get_testdata_file("MR_small.dcm")), folder / "1.2.840.113619.2.55")
    shutil.copy(scan, folder / "IM000002")  # a JPEG without an extension is still refused
    result = _run("--model", str(tflite_fp32), "--jsonl", str(folder / "IM000001"), str(folder / "IM000002"))
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["status"] == "ok"
    assert second["error"]["code"] == "unsupported_format" and "no DICOM header" in second["error"]["message"]
    walked = _run("--model", str(tflite_fp32), "--jsonl", str(folder))
    assert [Path(json.loads(line)["source"]).name for line in walked.stdout.splitlines()] == [
        "1.2.840.113619.2.55",
        "IM000001",
    ]


def test_exact_ties_go_to_the_lowest_index(tflite_fp32: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    classifier = Classifier.load(tflite_fp32)
    tied = np.array([[0.1, 0.45, 0.45, 0.0]], dtype=np.float32)
    monkeypatch.setattr(classifier._backend, "run_with_distance", lambda pixels: (tied, None))
    prediction = classifier.predict(np.zeros((32, 32, 3), dtype=np.uint8))
    labels = classifier.labels
    assert prediction.label == labels[1]
    assert [label for label, _ in prediction.top(4)] == [labels[1], labels[2], labels[0], labels[3]]


def test_wide_labels_keep_the_table_aligned(tflite_fp32: Path, scan: Path, tmp_path: Path) -> None:
    from tumorscan.metadata import embed_tflite_metadata, read_tflite_spec
    from tumorscan.names import display_width

    content = tflite_fp32.read_bytes()
    spec = read_tflite_spec(content)
    wide = spec.with_updates(labels=("神経膠腫", "髄膜腫", "腫瘍なし", "下垂体腫瘍"))
    model = tmp_path / "wide.tflite"
    model.write_bytes(embed_tflite_metadata(content, wide))
    result = _run("--model", str(model), "--top-k", "2", str(scan), str(scan))
    header, *rows = result.stdout.splitlines()[:3]
    column = display_width(header[: header.index("CONFIDENCE")])
    for row in rows:  # the confidence starts at the same display column on every row
        number = next(i for i, character in enumerate(row) if character in "01" and row[i + 1] == ".")
        assert display_width(row[:number]) == column, result.stdout
