"""Training on several devices or machines: strategies, TF_CONFIG, per-worker shards, one shared start.

`--strategy multiworker` reads the cluster from TF_CONFIG (`{"cluster": {"worker": ["host:port", ...]},
"task": {"type": "worker", "index": i}}`); worker 0 is the chief. Every worker runs the same command.
Each worker reads only its slice of every global batch; the chief's checkpoint state and weights are broadcast
at the start, so a rerun with `--resume` continues from the chief's last checkpoint; only the chief writes the
run folder (the others write to a temporary folder they remove).
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tumorscan.errors import TumorscanError
from tumorscan.train.data import default_cache_dir

if TYPE_CHECKING:
    from tumorscan.train.run_config import TrainConfig

PEER_TIMEOUT_SECONDS = float(os.environ.get("TUMORSCAN_PEER_TIMEOUT", "120"))
"""How long a worker waits for every other worker of TF_CONFIG before giving up (seconds)."""

HEARTBEAT_TIMEOUT_MS = 10_000
"""A worker that has not been heard from for this long is declared dead; the others stop."""

TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host0:23456", "host1:23456"]}, "task": {"type": "worker", "index": 0}}'
)

Shard = tuple[int, int]
"""(index, count): this worker reads slice `index` of `count` of every global batch."""


@dataclass(frozen=True)
class Worker:
    """This process's place in the cluster: one worker of `count`, the chief when `index` is 0."""

    index: int = 0
    count: int = 1

    @property
    def chief(self) -> bool:
        return self.index == 0


def read_tf_config(text: str | None) -> tuple[list[str], int]:
    """(worker addresses, this task's index) from the TF_CONFIG text; TumorscanError when unusable."""
    fix = f"set it on each machine like {TF_CONFIG_EXAMPLE}"
    if not text:
        raise TumorscanError(f"--strategy multiworker needs the TF_CONFIG environment variable; {fix}.")
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise TumorscanError(f"TF_CONFIG is not valid JSON ({exc}); {fix}.") from exc
    cluster = config.get("cluster") if isinstance(config, dict) else None
    workers = cluster.get("worker") if isinstance(cluster, dict) else None
    if not isinstance(workers, list) or not workers or not all(isinstance(w, str) for w in workers):
        raise TumorscanError(f"TF_CONFIG has no cluster.worker list of host:port addresses; {fix}.")
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") != "worker" or "index" not in task:
        raise TumorscanError(f'TF_CONFIG has no task {{"type": "worker", "index": i}}; {fix}.')
    index = task["index"]
    if not isinstance(index, int) or not 0 <= index < len(workers):
        raise TumorscanError(
            f"TF_CONFIG task index {index!r} is out of range: the cluster has {len(workers)} workers "
            f"(indices 0 to {len(workers) - 1})."
        )
    return workers, index


def select_strategy(name: str) -> tuple[Any, Worker]:
    """The tf.distribute strategy `name` and this worker: default (one device), mirrored (every local GPU,
    else every logical CPU device) or multiworker (TF_CONFIG; returns once every worker is up)."""
    if name == "multiworker":
        workers, index = read_tf_config(os.environ.get("TF_CONFIG"))
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy(), Worker()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices]), Worker()
    if name != "multiworker":
        raise TumorscanError(f"unknown strategy {name!r}; choose one of: default, mirrored, multiworker.")
    _configure_coordination(len(workers))
    message = (
        f"Error: worker {index} could not join the workers of TF_CONFIG ({', '.join(workers)}) within "
        f"{PEER_TIMEOUT_SECONDS:.0f} s; start the same command on each of them, or check the addresses, "
        "ports and firewalls."
    )
    with _deadline(PEER_TIMEOUT_SECONDS, message):
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        broadcast(strategy, [0.0], chief=True)  # a barrier: returns once every worker takes part
    return strategy, Worker(index, len(workers))


@contextlib.contextmanager
def _deadline(seconds: float, message: str) -> Iterator[None]:
    """Print `message` and exit with status 1 unless the block ends within `seconds`.

    Joining a cluster whose peers never come up blocks inside TensorFlow without returning to Python, so
    neither a signal handler nor a Python thread could end it: a small process prints the message and
    faulthandler's own thread ends this one (its traceback goes nowhere).
    """
    printer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; time.sleep(float(sys.argv[1])); print(sys.argv[2])",
            str(seconds),
            message,
        ],
        stdout=sys.stderr,
    )
    with open(os.devnull, "w") as nowhere:
        faulthandler.dump_traceback_later(seconds + 1, exit=True, file=nowhere)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()
            printer.kill()
            printer.wait()


def _configure_coordination(workers: int) -> None:
    """Set up TensorFlow's coordination service as MultiWorkerMirroredStrategy would, with a shorter
    heartbeat deadline, so the others notice a dead worker sooner."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader="/job:worker/replica:0/task:0",
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name="worker", num_tasks=workers)],
        heartbeat_timeout_in_ms=HEARTBEAT_TIMEOUT_MS,
    )


def peers_lost(worker: Worker, fit: Callable[..., Any]) -> Callable[..., Any]:
    """`fit`, turning the error a worker gets when another one stops mid-run into a one-line message."""
    import tensorflow as tf

    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return fit(*args, **kwargs)
        except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError) as exc:
            if worker.count == 1:
                raise
            raise TumorscanError(
                f"worker {worker.index} stopped: another worker stopped answering ({type(exc).__name__}); "
                "rerun the same command with --resume on every worker to continue from the chief's last "
                "checkpoint."
            ) from exc

    return guarded


def worker_config(config: TrainConfig, worker: Worker) -> tuple[TrainConfig, Path | None]:
    """The chief runs `config` as given. Another worker runs in a temporary folder that it removes at the
    end, with no audit and its own pixel cache (`<cache>/worker-<index>`: workers on one machine never write
    the same files); it also returns the run folder the chief writes."""
    if worker.count > 1 and config.arch == "vgg16":
        raise TumorscanError("vgg16 trains its head on cached features on one worker; drop --strategy.")
    if worker.chief:
        return config, None
    cache = (config.cache or default_cache_dir(config.out)) / f"worker-{worker.index}"
    out = Path(tempfile.mkdtemp(prefix=f"tumorscan-worker{worker.index}-"))
    return replace(config, out=out, cache=cache, audit=False, resume=False, force=False), config.out


def broadcast(strategy: Any, value: Any, chief: bool) -> Any:
    """The chief's `value` (a tensor or array) on every worker: a sum where the others contribute zeros."""
    import tensorflow as tf

    tensor = tf.convert_to_tensor(value)
    local = tensor if chief else tf.zeros_like(tensor)
    per_replica = strategy.experimental_distribute_values_from_function(lambda _: local)
    return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)


def share_state(strategy: Any, worker: Worker, state: dict[str, Any] | None) -> dict[str, Any] | None:
    """The chief's checkpoint state (None when it starts afresh) on every worker."""
    if worker.count == 1:
        return state
    import numpy as np

    data = np.frombuffer(json.dumps(state).encode("utf-8"), dtype=np.uint8).astype(np.int32)
    length = int(broadcast(strategy, [len(data)], worker.chief).numpy()[0])
    padded = data if worker.chief else np.zeros(length, dtype=np.int32)
    shared = broadcast(strategy, padded, worker.chief).numpy().astype(np.uint8).tobytes()
    result: dict[str, Any] | None = json.loads(shared.decode("utf-8"))
    return result


def share_weights(strategy: Any, worker: Worker, model: Any, checkpoint: Path | None) -> None:
    """Give every worker the chief's weights and optimizer state: its fresh model's, or its `checkpoint`'s.

    Every worker builds the same fresh model (creating variables in the same order is itself a collective
    step); the chief reads the checkpoint outside the strategy, so only it touches the file.
    """
    if worker.count == 1:
        return
    import keras

    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
    variables = [*model.weights, *model.optimizer.variables]
    if checkpoint is not None and worker.chief:
        saved = keras.models.load_model(checkpoint)
        for variable, value in zip(variables, [*saved.weights, *saved.optimizer.variables], strict=True):
            variable.assign(value.value)
    for variable in variables:
        variable.assign(broadcast(strategy, variable.value, worker.chief))


def distributed_dataset(strategy: Any, worker: Worker, make: Callable[[Shard | None], Any]) -> Any:
    """`make(None)` for one worker; for several, each worker's own slice of every global batch."""
    if worker.count == 1:
        return make(None)
    return strategy.distribute_datasets_from_function(
        lambda context: make((context.input_pipeline_id, context.num_input_pipelines))
    )


def fix_keras_distribution(model: Any, strategy: Any) -> None:
    """Work around two failures of Keras 3's fit and evaluate under several replicas (Keras 3.15).

    1. They first build the model from a batch averaged across replicas with `strategy.reduce`, which fails on
       an (images, labels) batch ("Attempt to convert a value (PerReplica...)"). Only the batch's shapes and
       types matter, so this model builds from one replica's part.
    2. Across workers they average each step's metrics with `strategy.reduce("MEAN", value, axis=0)`, which
       fails on the scalars a step returns ("Invalid reduction dimension 0"); they are averaged whole here.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as keras_trainer

    def build(iterator: Any = None, data_batch: Any = None) -> None:
        if iterator is not None:
            for _, _, batches in iterator:
                batch = next(batches)
                data_batch = tf.nest.map_structure(
                    lambda value: strategy.experimental_local_results(value)[0], batch
                )
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = build
    reduce = keras_trainer.reduce_per_replica
    if getattr(reduce, "fixed", False):
        return

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and keras_trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return reduce(values, strategy, reduction)

    reduce_per_replica.fixed = True  # type: ignore[attr-defined]
    keras_trainer.reduce_per_replica = reduce_per_replica
