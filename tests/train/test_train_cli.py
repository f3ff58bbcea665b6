"""tumor-train end to end on the sample scans at 32x32: outputs, resume, refusal, bad input, vgg16."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tumorscan.train.cli import train_command
from tumorscan.train.keras_file import load_keras, read_keras_spec
from tumorscan.train.run_config import RUN_FILES

LABELS = ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")
TINY = ["--size", "32", "--batch-size", "8", "--no-audit"]
RECIPE = ["--augment", "strong", "--class-weights", "--label-smoothing", "0.1"]
"""The fixture run's recipe, which a resume repeats."""


def run_train(*args: str | Path) -> Result:
    return CliRunner().invoke(train_command, [str(arg) for arg in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def trained(sample_train: Path, sample_test: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of cnn2 with a test folder, the audit and smoothed labels: the run folder."""
    out = tmp_path_factory.mktemp("runs") / "cnn2"
    result = run_train(
        "--arch", "cnn2", "--data", sample_train, "--test", sample_test, "--epochs", "1", "--out", out,
        "--size", "32", "--batch-size", "8", "--augment", "strong", "--class-weights",
        "--label-smoothing", "0.1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def test_one_epoch_writes_every_output(trained: Path) -> None:
    for name in RUN_FILES:
        assert (trained / name).is_file(), name
    assert (trained / "audit" / "audit.json").is_file()
    for name in ("confusion_matrix.png", "learning_curves.png"):
        assert (trained / name).read_bytes()[:4] == b"\x89PNG"
    report = json.loads((trained / "report.json").read_text(encoding="utf-8"))
    assert set(report["reports"]) == {"validation", "test", "test (clean)"}
    assert report["reports"]["validation"]["support"] == 4
    assert report["reports"]["test"]["support"] == 8
    text = (trained / "report.txt").read_text(encoding="utf-8")
    assert "precision" in text and "weighted avg" in text and "unreadable scans skipped: 0" in text
    history = json.loads((trained / "history.json").read_text(encoding="utf-8"))
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(history)
    run = json.loads((trained / "run.json").read_text(encoding="utf-8"))
    assert run["status"] == "finished" and run["epochs_run"] == 1
    assert {"cache_seconds", "fit_seconds", "epoch_seconds", "total_seconds"} <= set(run["timings"])


def test_model_carries_its_spec(trained: Path) -> None:
    spec = read_keras_spec(trained / "model.keras")
    assert spec is not None
    assert spec.labels == LABELS
    assert (spec.input.height, spec.input.width, spec.input.normalization) == (32, 32, "rescale")
    assert spec.architecture == "cnn2"
    provenance = spec.provenance
    assert provenance["config"]["augment"] == "strong" and provenance["seed"] == 0
    assert provenance["config"]["label_smoothing"] == 0.1
    assert provenance["dataset"]["counts"]["train"] == dict.fromkeys(LABELS, 5)
    assert {"tensorflow", "keras", "numpy", "pillow", "tumorscan"} <= set(provenance["versions"])
    model = load_keras(trained / "model.keras")
    assert tuple(model.input_shape) == (None, 32, 32, 3)
    optimizer_state = (trained / "checkpoints" / "last.keras").stat().st_size
    assert (trained / "model.keras").stat().st_size < optimizer_state / 2  # weights only


def test_existing_run_is_refused(trained: Path, sample_train: Path) -> None:
    result = CliRunner().invoke(
        train_command, ["--arch", "cnn2", "--data", str(sample_train), "--out", str(trained)]
    )
    assert result.exit_code == 1
    assert "already holds a training run; pass --resume" in result.output
    assert "Traceback" not in result.output


def test_resume_continues_at_the_next_epoch(trained: Path, sample_train: Path, tmp_path: Path) -> None:
    import keras

    out = tmp_path / "resumed"
    shutil.copytree(trained, out)
    saved = keras.models.load_model(out / "checkpoints" / "last.keras")
    assert int(saved.optimizer.iterations.numpy()) == 3  # 20 training scans in batches of 8
    args = ["--arch", "cnn2", "--data", sample_train, "--out", out, *TINY, *RECIPE]
    result = run_train(*args, "--epochs", "2", "--resume")
    assert result.exit_code == 0, result.output
    history = json.loads((out / "history.json").read_text(encoding="utf-8"))
    assert len(history["loss"]) == 2
    assert "resuming after epoch 1" in (out / "train.log").read_text(encoding="utf-8")
    state = json.loads((out / "checkpoints" / "state.json").read_text(encoding="utf-8"))
    assert state["epoch"] == 1
    resumed = keras.models.load_model(out / "checkpoints" / "last.keras")
    assert int(resumed.optimizer.iterations.numpy()) == 6
    done = run_train(*args, "--epochs", "2", "--resume")
    assert done.exit_code == 1 and "already completed 2 epochs" in done.output


def test_resume_refuses_other_settings(trained: Path, sample_train: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    shutil.copytree(trained, out)
    result = run_train(
        "--arch", "cnn1", "--data", sample_train, "--out", out, *TINY, "--epochs", "3", "--resume"
    )
    assert (
        result.exit_code == 1 and "cannot resume with different settings (arch cnn2 -> cnn1" in result.output
    )


def test_resume_refuses_another_recipe(trained: Path, sample_train: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    shutil.copytree(trained, out)
    result = run_train(
        "--arch", "cnn2", "--data", sample_train, "--out", out, *TINY, "--epochs", "3", "--resume",
        "--augment", "none", "--lr", "0.01",
    )  # fmt: skip
    assert result.exit_code == 1
    for change in ("augment strong -> none", "class_weights True -> False", "label_smoothing 0.1 -> 0.0"):
        assert change in result.output
    assert "lr 0.001 -> 0.01" in result.output and "batch_size" not in result.output
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["config"]["augment"] == "strong"


def test_resume_without_a_run_is_refused(sample_train: Path, tmp_path: Path) -> None:
    result = run_train("--arch", "cnn2", "--data", sample_train, "--out", tmp_path / "new", "--resume")
    assert result.exit_code == 1 and "holds no checkpoint to resume" in result.output


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_force_replaces_a_run_under_each_strategy(
    trained: Path, sample_train: Path, tmp_path: Path, strategy: str
) -> None:
    out = tmp_path / "forced"
    shutil.copytree(trained, out)
    result = run_train(
        "--arch", "cnn2", "--data", sample_train, "--out", out, *TINY, "--epochs", "1", "--force",
        "--augment", "none", "--strategy", strategy, "--monitor", "val_accuracy",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["strategy"] == {"name": strategy, "replicas": 1}
    assert "test" not in json.loads((out / "report.json").read_text(encoding="utf-8"))["reports"]
    assert not (out / "audit").exists()


def test_corrupt_and_foreign_files_are_named_skipped_and_counted(scans_copy: Path, tmp_path: Path) -> None:
    (scans_copy / "glioma_tumor" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (scans_copy / "glioma_tumor" / "readme.txt").write_text("not a scan", encoding="utf-8")
    out = tmp_path / "run"
    result = run_train(
        "--arch", "cnn2", "--data", scans_copy, "--out", out, *TINY, "--epochs", "1", "--augment", "none"
    )
    assert result.exit_code == 0, result.output
    assert "skipped unreadable scan" in result.output and "broken.jpg" in result.output
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [Path(item["path"]).name for item in report["unreadable"]["train"]] == ["broken.jpg"]
    assert "unreadable scans skipped: 1" in (out / "report.txt").read_text(encoding="utf-8")
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["counts"]["unreadable"] == {"train": 1}


@pytest.mark.parametrize(
    ("arrange", "message"),
    [
        (lambda root: None, "no such folder"),
        (lambda root: root.mkdir(), "has no class sub-folders"),
        (lambda root: (root / "glioma_tumor").mkdir(parents=True), "class folder holds no scans"),
    ],
    ids=["missing", "empty", "empty-class"],
)
def test_bad_data_folders_give_clean_errors(tmp_path: Path, arrange, message: str) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    arrange(data)
    result = run_train("--arch", "cnn2", "--data", data, "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_unknown_architecture_lists_valid_ones(sample_train: Path, tmp_path: Path) -> None:
    result = run_train("--arch", "resnet", "--data", sample_train, "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 1
    assert "unknown architecture 'resnet'; choose one of: cnn1, cnn2, vgg16." in result.output
    assert not (tmp_path / "run").exists()


def test_weights_only_for_vgg16(sample_train: Path, tmp_path: Path) -> None:
    result = run_train(
        "--arch", "cnn1", "--data", sample_train, "--out", tmp_path / "run", *TINY, "--weights", "none"
    )
    assert result.exit_code == 1 and "--weights applies to vgg16 only" in result.output


def test_vgg16_trains_its_head_on_cached_features(sample_train: Path, tmp_path: Path) -> None:
    out = tmp_path / "vgg"
    args = [
        "--arch",
        "vgg16",
        "--data",
        sample_train,
        "--out",
        out,
        *TINY,
        "--epochs",
        "2",
        "--weights",
        "none",
    ]
    result = run_train(*args, "--augment", "seed")
    assert result.exit_code == 0, result.output
    assert "cannot be augmented; --augment is ignored" in result.output
    features = sorted((tmp_path / ".cache").glob("*/features-*.npy"))
    assert len(features) == 1
    spec = read_keras_spec(out / "model.keras")
    assert spec is not None and spec.architecture == "vgg16" and spec.input.normalization == "caffe"
    from tumorscan.train.architectures import count_params

    model = load_keras(out / "model.keras")
    assert count_params(model)[1] == 4096 * 4 + 4
    stamp = features[0].stat().st_mtime_ns
    again = run_train(*args, "--force")
    assert again.exit_code == 0, again.output
    assert sorted((tmp_path / ".cache").glob("*/features-*.npy")) == features
    assert features[0].stat().st_mtime_ns == stamp


def test_vgg16_pretrained_weights_need_224(sample_train: Path, tmp_path: Path) -> None:
    result = run_train("--arch", "vgg16", "--data", sample_train, "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 1 and "needs --size 224" in result.output
    assert not (tmp_path / "run").exists()


def test_vgg16_weights_that_cannot_be_had_are_a_clean_error(
    sample_train: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keras.src.utils import file_utils

    def offline(*args: object, **kwargs: object) -> str:
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(file_utils, "get_file", offline)
    args = ["--arch", "vgg16", "--data", sample_train, "--size", "224", "--no-audit"]
    result = run_train(*args, "--out", tmp_path / "run")
    assert result.exit_code == 1
    assert "could not download the VGG16 ImageNet weights (URL fetch failure: no network)" in result.output
    assert "--weights none" in result.output and "Traceback" not in result.output
    result = run_train(*args, "--out", tmp_path / "run", "--weights", tmp_path / "missing.h5")
    assert result.exit_code == 1 and "VGG16 weights file not found" in result.output


def test_training_ends_by_calibrating_on_validation(trained: Path) -> None:
    from tumorscan.train.distance import read_distance

    spec = read_keras_spec(trained / "model.keras")
    assert spec is not None and spec.trust is not None
    assert (
        spec.trust["validation"]["scans"] == 4 and spec.trust["temperature"] > 0
    )  # 1 validation scan per class
    assert spec.trust == json.loads((trained / "trust.json").read_text(encoding="utf-8"))
    assert (trained / "reliability.png").is_file() and read_distance(trained / "model.keras") is not None
