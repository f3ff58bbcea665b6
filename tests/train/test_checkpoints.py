"""The checkpoint callback: best and last models, state for --resume, early stopping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tumorscan.train.architectures import build_model
from tumorscan.train.checkpoints import RunCheckpoint


def epochs(
    monitor: str, mode: str, values: list[float], folder: Path, patience: int = 2
) -> tuple[dict[str, Any], list[str]]:
    """Feed `values` of `monitor` to a fresh callback epoch by epoch; (its state, its log lines)."""
    lines: list[str] = []
    state = {"epoch": -1, "best": None, "best_epoch": None, "wait": 0, "history": {}}
    callback = RunCheckpoint(folder, folder, monitor, mode, patience, state, lines.append)
    callback.set_model(build_model("cnn2", input_size=(32, 32)))
    for epoch, value in enumerate(values):
        callback.model.stop_training = False
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"loss": 1.0, monitor: value})
        if callback.model.stop_training:
            break
    return state, lines


def test_best_is_kept_and_training_stops_after_patience(tmp_path: Path) -> None:
    state, lines = epochs("val_loss", "min", [1.0, 0.8, 0.9, 0.85, 0.1], tmp_path)
    assert (state["best"], state["best_epoch"], state["epoch"], state["stopped_early"]) == (0.8, 1, 3, True)
    assert json.loads((tmp_path / "state.json").read_text(encoding="utf-8")) == state
    assert (tmp_path / "best.keras").is_file() and (tmp_path / "last.keras").is_file()
    assert json.loads((tmp_path / "history.json").read_text(encoding="utf-8"))["val_loss"] == [
        1.0,
        0.8,
        0.9,
        0.85,
    ]
    assert lines[1].endswith("(best)") and "early stopping" in lines[-1]


@pytest.mark.parametrize(("mode", "expected"), [("max", 2), ("min", 0)])
def test_mode_decides_what_is_better(tmp_path: Path, mode: str, expected: int) -> None:
    state, _ = epochs("val_accuracy", mode, [0.5, 0.6, 0.7], tmp_path, patience=5)
    assert state["best_epoch"] == expected
