"""Checkpointing during training: best and last models, resumable state, history, early stopping."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from tumorscan.files import atomic_write_text
from tumorscan.train.reporting import plot_learning_curves


def save_model(model: Any, path: Path) -> None:
    """model.save through a temporary file, so a checkpoint is never half-written."""
    partial = path.with_name(f".{path.stem}.partial.keras")
    model.save(partial)
    partial.replace(path)


class RunCheckpoint(keras.callbacks.Callback):  # type: ignore[misc]
    """Keras callback: history, best and last checkpoints, resumable state, early stopping.

    `state` (saved as checkpoints/state.json each epoch) holds the last completed epoch, the best
    monitored value and its epoch, epochs since the last improvement, and the history.
    """

    def __init__(
        self,
        folder: Path,
        out: Path,
        monitor: str,
        mode: str,
        patience: int,
        state: dict[str, Any],
        log: Callable[[str], None],
    ) -> None:
        super().__init__()
        self.folder, self.out, self.monitor, self.mode, self.patience = folder, out, monitor, mode, patience
        self.state, self.log = state, log
        self.started = time.time()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.started = time.time()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        seconds = time.time() - self.started
        history = self.state["history"]
        for key, value in {**logs, "seconds": seconds}.items():
            history.setdefault(key, []).append(float(value))
        value = float(logs[self.monitor])
        best = self.state["best"]
        improved = best is None or (value < best if self.mode == "min" else value > best)
        if improved:
            self.state.update(best=value, best_epoch=epoch, wait=0)
            save_model(self.model, self.folder / "best.keras")
        else:
            self.state["wait"] += 1
        save_model(self.model, self.folder / "last.keras")
        self.state["epoch"] = epoch
        self.state["stopped_early"] = self.state["wait"] >= self.patience
        atomic_write_text(self.folder / "state.json", json.dumps(self.state, indent=1))
        atomic_write_text(self.out / "history.json", json.dumps(history, indent=1))
        plot_learning_curves(history, self.out / "learning_curves.png")
        metrics = " ".join(f"{key}={float(v):.4f}" for key, v in sorted(logs.items()))
        self.log(f"epoch {epoch + 1}: {metrics} [{seconds:.1f} s]{' (best)' if improved else ''}")
        if self.state["stopped_early"]:
            self.log(f"early stopping: {self.monitor} did not improve for {self.patience} epochs")
            self.model.stop_training = True
