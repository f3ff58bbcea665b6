"""A training run's settings and set-up: the options, the run folder (fresh, forced or resumed), the log.

`tumorscan.train.trainer` runs the stages; this module holds what they and the commands share.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

import tumorscan
from tumorscan.errors import MissingDependencyError, TumorscanError
from tumorscan.folders import refuse_split_roots
from tumorscan.spec import ModelSpec
from tumorscan.train.augment import AUGMENTATIONS
from tumorscan.train.splits import SPLITS

STRATEGIES = ("default", "mirrored", "multiworker")
RECIPE = (
    "arch",
    "size",
    "val_split",
    "split",
    "seed",
    "monitor",
    "weights",
    "augment",
    "class_weights",
    "label_smoothing",
    "lr",
    "batch_size",
)
"""What a resumed run must repeat: the checkpoint's loss and optimizer and the run's records assume them."""
MONITORS = {"val_loss": "min", "val_accuracy": "max"}
CHECKPOINTS = "checkpoints"
AUDIT = "audit"
RUN_FILES = (
    "model.keras",
    "history.json",
    "report.json",
    "report.txt",
    "confusion_matrix.png",
    "learning_curves.png",
    "train.log",
    "run.json",
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (recorded in run.json and the model's provenance)."""

    arch: str
    data: Path
    out: Path
    epochs: int = 30
    size: tuple[int, int] = (224, 224)
    batch_size: int = 32
    lr: float = 1e-3
    val_split: float = 0.15
    split: str = "grouped"
    seed: int = 0
    augment: str = "seed"
    class_weights: bool = False
    label_smoothing: float = 0.0
    patience: int = 5
    monitor: str = "val_loss"
    weights: str | None = None
    strategy: str = "default"
    test: Path | None = None
    cache: Path | None = None
    audit: bool = True
    resume: bool = False
    force: bool = False

    def validate(self) -> None:
        """Raise TumorscanError for option values no run can use."""
        from tumorscan.train.architectures import ARCHITECTURES, get_architecture

        architecture = get_architecture(self.arch)
        problems = []
        if self.epochs < 1:
            problems.append("--epochs must be at least 1")
        if self.batch_size < 1:
            problems.append("--batch-size must be at least 1")
        if min(self.size) < 32:
            problems.append("--size must be at least 32")
        if self.patience < 1:
            problems.append("--patience must be at least 1")
        if not 0 <= self.label_smoothing < 1:
            problems.append("--label-smoothing must be at least 0 and below 1")
        if self.augment not in AUGMENTATIONS:
            problems.append(f"--augment must be one of {', '.join(AUGMENTATIONS)}")
        if self.split not in SPLITS:
            problems.append(f"--split must be one of {', '.join(SPLITS)}")
        if self.monitor not in MONITORS:
            problems.append(f"--monitor must be one of {', '.join(MONITORS)}")
        if self.strategy not in STRATEGIES:
            problems.append(f"--strategy must be one of {', '.join(STRATEGIES)}")
        if self.weights is not None and architecture.transfer is None:
            takes = ", ".join(name for name, known in ARCHITECTURES.items() if known.transfer is not None)
            problems.append(f"--weights applies to {takes} only; {self.arch} trains from scratch")
        if problems:
            raise TumorscanError("; ".join(problems) + ".")
        refuse_split_roots(self.data, self.test)  # before the run folder is touched

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings)."""
        return {
            key: (str(value) if isinstance(value, Path) else value) for key, value in asdict(self).items()
        }


@dataclass
class TrainResult:
    """What a finished run produced."""

    out: Path
    model_path: Path
    reports: dict[str, dict[str, Any]]
    best_epoch: int
    epochs_run: int
    timings: dict[str, Any] = field(default_factory=dict)


class RunLog:
    """Timestamped lines to stderr and appended to the run's train.log."""

    def __init__(self, path: Path, echo: bool = True) -> None:
        self.path = path
        self.echo = echo
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, message: str) -> None:
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        with self.path.open("a", encoding="utf-8") as stream:
            for line in message.splitlines() or [""]:
                stream.write(f"{stamp} {line}\n")
        if self.echo:
            print(message, file=sys.stderr, flush=True)


class SplitRecord(NamedTuple):
    """How a model's validation part was carved from its training folder."""

    fraction: float
    seed: int
    method: str


def recorded_split(spec: ModelSpec) -> SplitRecord:
    """The validation split a model was trained and calibrated with, else `TrainConfig`'s defaults.

    A `.keras` model records it in its provenance (the training config); an exported file, whose provenance
    is the export's, in its trust entry (`fitted_on`). Runs recorded before grouped splits existed carved
    theirs at random.
    """
    config = split_entry(spec)
    if not config:
        return SplitRecord(TrainConfig.val_split, TrainConfig.seed, TrainConfig.split)
    return SplitRecord(
        float(config.get("val_split", TrainConfig.val_split)),
        int(config.get("seed", TrainConfig.seed)),
        str(config.get("split", "random")),
    )


def split_entry(spec: ModelSpec) -> dict[str, Any] | None:
    """Where a model records its split: the training config (a `.keras` model), else the trust entry's
    `fitted_on` (an exported file), else None."""
    config: dict[str, Any] | None = (spec.provenance or {}).get("config")
    return config or (spec.trust or {}).get("fitted_on")


def split_record(data: Path, split: SplitRecord) -> dict[str, Any]:
    """The trust entry's `fitted_on`: the folder the validation split was carved from, and how."""
    return {"data": str(data), "val_split": split.fraction, "seed": split.seed, "split": split.method}


def require_training_stack() -> None:
    """Raise MissingDependencyError naming the [train] extra when TensorFlow or Keras is missing."""
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "tensorflow", "train", "Training and evaluation") from exc


def tool_versions() -> dict[str, str]:
    """Versions of what shaped a model: Python, tumorscan, TensorFlow, Keras, NumPy, Pillow."""
    import keras
    import PIL
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tumorscan": tumorscan.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
    }


def balanced_class_weights(label_ids: NDArray[np.integer], num_classes: int) -> dict[int, float]:
    """Weights n / (k * n_class), so every class contributes equally to the loss."""
    counts = np.bincount(label_ids, minlength=num_classes)
    return {i: float(len(label_ids) / (num_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


def holds_run(out: Path) -> bool:
    """True when `out` already holds (part of) a training run."""
    return any((out / name).exists() for name in (*RUN_FILES, CHECKPOINTS))


def prepare_output(config: TrainConfig) -> None:
    """Refuse an output folder that holds a run unless resuming or forcing; with --force, clear it.

    Raises:
        TumorscanError: the folder holds a run (without --resume/--force), or --resume finds none.
    """
    out = config.out
    if config.resume:
        if not (out / CHECKPOINTS / "state.json").is_file():
            raise TumorscanError(f"{out}: holds no checkpoint to resume; start a new run without --resume.")
        return
    if holds_run(out):
        if not config.force:
            raise TumorscanError(
                f"{out}: already holds a training run; pass --resume to continue it, --force to replace it, "
                "or choose another --out."
            )
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
        for folder in (CHECKPOINTS, AUDIT):
            shutil.rmtree(out / folder, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def check_resumable(config: TrainConfig) -> dict[str, Any]:
    """The saved checkpoint state, after checking the run it belongs to matches `config`."""
    out = config.out
    try:
        state: dict[str, Any] = json.loads((out / CHECKPOINTS / "state.json").read_text(encoding="utf-8"))
        previous = json.loads((out / "run.json").read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError) as exc:
        raise TumorscanError(
            f"{out}: the run's checkpoint state is unreadable ({exc}); start again with --force."
        ) from exc
    current = json.loads(json.dumps(config.to_json()))
    changed = [
        f"{key} {previous.get(key)} -> {current[key]}" for key in RECIPE if previous.get(key) != current[key]
    ]
    if Path(previous["data"]).resolve() != config.data.resolve():
        changed.append(f"data {previous['data']} -> {config.data}")
    if changed:
        raise TumorscanError(
            f"{out}: cannot resume with different settings ({'; '.join(changed)}); repeat the run's options."
        )
    if state["epoch"] + 1 >= config.epochs:
        done = state["epoch"] + 1
        raise TumorscanError(
            f"{out}: the run already completed {done} epochs; pass a larger --epochs to continue."
        )
    return state
