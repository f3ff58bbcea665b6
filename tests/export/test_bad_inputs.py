"""Bad inputs to an export: each is refused (or warned about) with a message saying what to do."""

from __future__ import annotations

import shutil
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import click.testing
import pytest
from click.testing import CliRunner

from tumorscan.errors import DatasetError, ModelError, TumorscanError
from tumorscan.export.exporter import ExportOptions, export_model
from tumorscan.export.formats import select_targets
from tumorscan.export.graph import OutputShapeError
from tumorscan.train.keras_file import UnsafeModelError


def _options(tmp_path: Path, formats: str = "tflite", mode: str = "int8", **options: object) -> ExportOptions:
    targets = select_targets(formats, mode)
    return ExportOptions(targets=targets, out_dir=tmp_path / "out", **options)  # type: ignore[arg-type]


def _corrupt_scan(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return path


def test_int8_without_calibration_is_refused(tiny_keras_model: Path, tmp_path: Path) -> None:
    with pytest.raises(
        TumorscanError, match="tflite-int8, onnx-int8 need calibration scans: pass --calibration"
    ):
        export_model(tiny_keras_model, _options(tmp_path, formats="tflite,onnx"))


def test_missing_calibration_folder_is_refused(tiny_keras_model: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such folder"):
        export_model(tiny_keras_model, _options(tmp_path, calibration_root=tmp_path / "missing"))


def test_calibration_folder_without_scans_is_refused(tiny_keras_model: Path, tmp_path: Path) -> None:
    (tmp_path / "flat").mkdir()
    with pytest.raises(DatasetError, match="holds no scans"):
        export_model(tiny_keras_model, _options(tmp_path, calibration_root=tmp_path / "flat"))


def test_empty_class_folder_is_refused(tiny_keras_model: Path, tmp_path: Path) -> None:
    (tmp_path / "empty" / "glioma_tumor").mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no scans"):
        export_model(tiny_keras_model, _options(tmp_path, calibration_root=tmp_path / "empty"))


def test_calibration_folder_of_undecodable_scans_is_refused(tiny_keras_model: Path, tmp_path: Path) -> None:
    _corrupt_scan(tmp_path / "broken" / "no_tumor" / "1.jpg")
    with pytest.raises(DatasetError, match="none of the scans tried could be decoded"):
        export_model(tiny_keras_model, _options(tmp_path, calibration_root=tmp_path / "broken"))


def test_undecodable_scans_are_named_and_skipped_and_a_tiny_set_is_warned_about(
    tiny_keras_model: Path, sample_train: Path, tmp_path: Path
) -> None:
    calibration = tmp_path / "calibration"
    shutil.copytree(sample_train, calibration)
    _corrupt_scan(calibration / "glioma_tumor" / "broken (1).jpg")
    report = export_model(tiny_keras_model, _options(tmp_path, calibration_root=calibration))
    assert [name for name, _ in report.skipped_scans] == ["glioma_tumor/broken (1).jpg"]
    assert report.calibration is not None and report.calibration.count == 24
    assert report.calibration.skipped == 1
    assert any("at least 100 recommended" in note for note in report.calibration_notes)
    text = (tmp_path / "out" / "export_report.txt").read_text(encoding="utf-8")
    assert (
        "skipped scan: glioma_tumor/broken (1).jpg" in text and "warning: only 24 calibration scans" in text
    )


@pytest.mark.parametrize("layout", ["flat", "renamed"])
def test_calibration_from_a_flat_or_misnamed_folder_exports(
    layout: str, tiny_keras_model: Path, sample_train: Path, tmp_path: Path
) -> None:
    calibration = tmp_path / "calibration"
    for folder in sorted(sample_train.iterdir()):
        if layout == "flat":
            calibration.mkdir(exist_ok=True)
            for path in folder.iterdir():
                shutil.copyfile(path, calibration / f"{folder.name} {path.name}")
        else:
            shutil.copytree(folder, calibration / f"healthy or not {folder.name[:3]}")
    report = export_model(tiny_keras_model, _options(tmp_path, calibration_root=calibration))
    assert report.calibration is not None and report.calibration.count == 24
    expected = (
        {".": 24} if layout == "flat" else {f"healthy or not {f.name[:3]}": 6 for f in sample_train.iterdir()}
    )
    assert report.calibration.labels == expected
    assert Path(report.files[0].path).is_file()


def test_a_dataset_root_as_calibration_folder_is_refused(
    tiny_keras_model: Path, sample_train: Path, tmp_path: Path
) -> None:
    for split in ("Training", "Testing"):
        shutil.copytree(sample_train, tmp_path / "root" / split)
    with pytest.raises(DatasetError, match=r"pass the split to use instead: .*Testing \(testing\)"):
        export_model(tiny_keras_model, _options(tmp_path, calibration_root=tmp_path / "root"))


def test_output_that_is_not_a_vector_is_refused(tmp_path: Path) -> None:
    import keras

    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(3, 3)], name="feature_map")
    path = tmp_path / "feature_map.keras"
    model.save(path)
    with pytest.raises(OutputShapeError, match=r"outputs shape \(None, 14, 14, 3\); expected one vector"):
        export_model(path, _options(tmp_path, mode="fp32", labels=("a", "b", "c"), preprocess="rescale"))


def test_labels_that_do_not_match_the_outputs_are_refused(foreign_logits_model: Path, tmp_path: Path) -> None:
    options = _options(tmp_path, mode="fp32", labels=("a", "b", "c", "d"), preprocess="none", logits=True)
    with pytest.raises(OutputShapeError, match="outputs 3 classes but 4 labels were given"):
        export_model(foreign_logits_model, options)


def test_unwritable_output_folder_is_refused_before_any_work(tiny_keras_model: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    options = ExportOptions(targets=select_targets("tflite", "fp32"), out_dir=blocker / "out")
    with pytest.raises(TumorscanError, match="cannot write here"):
        export_model(tiny_keras_model, options)


def test_a_lambda_layer_is_refused_before_loading(tmp_path: Path) -> None:
    import keras

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Lambda(lambda x: x * 2.0)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(UnsafeModelError, match="Lambda layer"):
        export_model(path, _options(tmp_path, mode="fp32", labels=("a", "b"), preprocess="none"))


def test_h5_is_refused_without_allow_legacy(tmp_path: Path) -> None:
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(ModelError, match=r"refused by default; .* --allow-legacy"):
        export_model(path, _options(tmp_path, mode="fp32"))


def test_unknown_calibration_method_is_refused(tiny_keras_model: Path, tmp_path: Path) -> None:
    with pytest.raises(TumorscanError, match="choose from: minmax, entropy, percentile"):
        export_model(tiny_keras_model, _options(tmp_path, mode="fp32", calibration_method="kl"))


def test_an_interrupted_write_leaves_no_model_file(
    tiny_keras_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tumorscan.files

    def interrupted(source: Path, target: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(tumorscan.files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_model(tiny_keras_model, _options(tmp_path, mode="fp32"))
    assert list((tmp_path / "out").iterdir()) == []


def _archive(path: Path, config: str = '{"class_name": "Sequential", "config": {}}') -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("config.json", config)
        archive.writestr("metadata.json", "{}")
    return path


EVIL_CONFIG = '{"class_name": "Dense", "module": "kerasevil.layers"}'


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _patch_entries(path: Path, flag_bits: int = 0, method: int | None = None) -> Path:
    """Mark every entry of a stored zip encrypted (flag bit 0) or give it another compression method."""
    data = bytearray(path.read_bytes())
    for signature, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        start = data.find(signature)
        while start >= 0:
            data[start + flag_at] |= flag_bits
            if method is not None:
                data[start + method_at : start + method_at + 2] = method.to_bytes(2, "little")
            start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))
    return path


def _export_cli(model: Path, out: Path, *options: str) -> click.testing.Result:
    from tumorscan.export.cli import export_command

    arguments = [str(model), "--out", str(out), "--mode", "fp32", "--labels", "a,b", "--preprocess", "none"]
    return CliRunner().invoke(export_command, [*arguments, *options])


@pytest.mark.parametrize(
    ("name", "build", "says"),
    [
        ("deep.keras", lambda p: _archive(p, "[" * 100_000 + "]" * 100_000), "nests too deeply"),
        ("encrypted.keras", lambda p: _patch_entries(_archive(p), flag_bits=1), "'config.json' is encrypted"),
        ("method.keras", lambda p: _patch_entries(_archive(p), method=99), "unknown compression method (99)"),
        ("evil.keras", lambda p: _archive(p, EVIL_CONFIG), "module 'kerasevil.layers', outside Keras"),
        ("empty.keras", lambda p: _write(p, b""), "not a .keras archive"),
        ("corrupt.h5", lambda p: _write(p, b"\x89HDF\r\n\x1a\n" + bytes(300)), "not a readable HDF5"),
    ],
)
def test_malformed_archives_end_in_one_line_before_keras_reads_them(
    tmp_path: Path, name: str, build: Callable[[Path], Path], says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("Keras was asked to read a malformed archive")

    monkeypatch.setattr(keras.models, "load_model", never)
    model = build(tmp_path / name)
    out = tmp_path / "out"
    result = _export_cli(model, out, "--allow-legacy")
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and says in errors[0] and "Traceback" not in result.output, result.output
    assert not out.exists()  # --out is created only once the inputs are valid


def test_a_lambda_layer_in_h5_is_refused_with_allow_legacy(tmp_path: Path) -> None:
    import keras

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Lambda(lambda x: x * 2.0)])
    path = tmp_path / "lambda.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns that .h5 is a legacy format
        model.save(path)
    with pytest.raises(UnsafeModelError, match="Lambda layer"):
        options = _options(tmp_path, mode="fp32", labels=("a", "b"), preprocess="none", allow_legacy=True)
        export_model(path, options)
    assert not (tmp_path / "out").exists()
