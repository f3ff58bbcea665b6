"""Archive-scale inference on Ray Data (the `[ray]` extra): many machines, one record per scan.

`BatchClassifier` is a stateful callable for `Dataset.map_batches`: each actor loads the model once and
turns a batch of sources (paths or URIs, or their bytes) into the records `tumor-infer --jsonl` writes.
`classify_on_ray` is the whole job: list the sources, skip those an earlier run recorded, classify them on
an actor per CPU (streaming; Ray retries the tasks of a lost node), and write sharded JSONL or Parquet
from the driver, so each record is written once. Ray is imported only when a job starts: importing
this module costs nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .classifier import Classifier, Prediction, PredictionError, Result
from .errors import ImageError, MissingDependencyError, TumorscanError
from .models import default_model_path
from .shards import SHARD_RECORDS, RecordFolder
from .sources import SourceList, is_uri, list_sources, read_uri

LOOPBACK = "127.0.0.1"
CONNECT_SECONDS = 5.0
"""How long to wait for a cluster's head to accept a connection."""
BLOCK_SOURCES = 200
"""Sources per Ray block (one actor call): what a lost node's retry redoes at most per block."""


def record_line(result: Result, top_k: int, model: str) -> str:
    """The JSONL line of one result, as `tumor-infer --jsonl` writes it."""
    return json.dumps({**result.to_dict(top_k), "model": model})


def outcome(result: Result) -> str:
    """`predicted`, `abstained` or the error code: what the summary counts."""
    if isinstance(result, Prediction):
        return "abstained" if result.abstain else "predicted"
    return result.code


class BatchClassifier:
    """A batch of sources -> their `tumor-infer --jsonl` records; the model is loaded once per instance.

    A batch is a mapping with a `source` column (paths or URIs) and, optionally, a `bytes` column holding
    each source's content (then nothing is read). It returns the columns `source`, `record` (the JSONL
    line) and `outcome` (see `outcome`), one row per source, in order.
    """

    def __init__(
        self,
        model: str | None = None,
        backend: str | None = None,
        threads: int | None = 1,
        top_k: int = 1,
        abstain_threshold: float | None = None,
    ) -> None:
        self.classifier = Classifier.load(model or default_model_path(), backend=backend, num_threads=threads)
        self.classifier.abstain_threshold = abstain_threshold
        self.top_k = top_k
        identity = self.classifier.identity
        self.model = f"{identity.file}@{identity.sha256}"

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[str]]:
        sources = [str(source) for source in batch["source"]]
        contents = batch.get("bytes")
        results = self.classify(sources, None if contents is None else [bytes(c) for c in contents])
        return {
            "source": sources,
            "record": [record_line(result, self.top_k, self.model) for result in results],
            "outcome": [outcome(result) for result in results],
        }

    def classify(self, sources: Sequence[str], contents: Sequence[bytes] | None = None) -> list[Result]:
        """One result per source: local paths are read as `tumor-infer` reads them, URIs through pyarrow."""
        loaded: list[str | bytes | PredictionError] = []
        for index, source in enumerate(sources):
            if contents is not None:
                loaded.append(contents[index])
            elif not is_uri(source):
                loaded.append(source)
            else:
                try:
                    loaded.append(read_uri(source))
                except ImageError as exc:
                    loaded.append(PredictionError(source, exc.code, str(exc)))
        inputs = [item for item in loaded if not isinstance(item, PredictionError)]
        predicted = iter(self.classifier.iter_predictions(inputs))
        results: list[Result] = []
        for source, item in zip(sources, loaded, strict=True):
            if isinstance(item, PredictionError):
                results.append(item)
            else:
                results.append(_named(next(predicted), source))
        return results


def _named(result: Result, source: str) -> Result:
    """A result named by its source (a scan read as bytes is otherwise named `<N bytes>`)."""
    if result.source == source:
        return result
    if isinstance(result, PredictionError):
        return PredictionError(source, result.code, result.message.replace(result.source, source, 1))
    return replace(result, source=source)


@dataclass(frozen=True)
class RayJob:
    """One archive job: what to classify, with which model, where the records go."""

    sources: Sequence[str]
    output: str
    model: Path | None = None
    output_format: str = "jsonl"
    address: str | None = None
    resume: bool = False
    backend: str | None = None
    threads: int = 1
    top_k: int = 1
    abstain_threshold: float | None = None
    shard_records: int = SHARD_RECORDS
    block_sources: int = BLOCK_SOURCES


@dataclass
class RayRun:
    """What a job did: counts by outcome, sources skipped as already done, the cluster it ran on."""

    outcomes: dict[str, int] = field(default_factory=dict)
    already_done: int = 0
    listed: SourceList = field(default_factory=SourceList)
    model: str = ""
    """The model, as tumor-infer's summary names it."""
    abstention_note: str | None = None
    """Why the model cannot abstain (None when it can)."""
    nodes: int = 0
    cpus: int = 0
    shards: int = 0

    @property
    def can_abstain(self) -> bool:
        return self.abstention_note is None

    def count(self, outcomes: Sequence[str]) -> None:
        for name in outcomes:
            self.outcomes[name] = self.outcomes.get(name, 0) + 1


class NoSourcesError(TumorscanError):
    """The arguments name no scans at all."""

    code = "no_sources"


def check_reachable(address: str, timeout: float = CONNECT_SECONDS) -> None:
    """A `HOST:PORT` address must accept a TCP connection (Ray itself would wait for it for minutes).

    Raises:
        TumorscanError: nothing answers there.
    """
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "/" in address:
        return  # `auto`, `ray://...`: Ray resolves them
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise TumorscanError(
            f"could not reach the Ray cluster at {address} ({exc.strerror or exc}); start it with "
            "`ray start --head` there, or check --ray-address (the head's HOST:PORT, 6379 by default)."
        ) from exc


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingDependencyError("ray", "ray", "--engine ray") from exc
    return ray


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Ray connected to `address` (`auto`: this machine's cluster; None: `RAY_ADDRESS`, else a local Ray).

    Raises:
        MissingDependencyError: Ray (with Ray Data) is not installed.
        TumorscanError: the cluster cannot be reached.
    """
    ray = _import_ray()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        check_reachable(address)
    if ray.is_initialized():  # the caller's own Ray (a notebook, a test): used as it is, left running
        yield ray
        return
    options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address is None:  # on the loopback: a laptop's Ray talks to nothing outside
        options.update(address="local", include_dashboard=False, _node_ip_address=LOOPBACK)
    else:
        options.update(address=address)
    try:
        ray.init(**options)
    except Exception as exc:  # ConnectionError, ValueError, RuntimeError, a timeout: all say the same
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise TumorscanError(
            f"could not reach {where} ({type(exc).__name__}: {exc}); start it with `ray start --head` "
            "(or check --ray-address), then rerun."
        ) from exc
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        yield ray
    finally:
        ray.shutdown()


def _dataset(ray: Any, sources: Sequence[str], job: RayJob, model: Path, cpus: int) -> Any:
    """The sources, classified by an actor per CPU, in blocks of `job.block_sources`."""
    blocks = max(1, math.ceil(len(sources) / job.block_sources))
    items = [{"source": source} for source in sources]
    kwargs = {
        "model": str(model),
        "backend": job.backend,
        "threads": job.threads,
        "top_k": job.top_k,
        "abstain_threshold": job.abstain_threshold,
    }
    return ray.data.from_items(items, override_num_blocks=blocks).map_batches(
        BatchClassifier,
        fn_constructor_kwargs=kwargs,
        batch_size=job.block_sources,
        batch_format="numpy",
        concurrency=(1, max(1, cpus)),
        num_cpus=job.threads,
    )


def classify_on_ray(job: RayJob, progress: Callable[[int, int], None] | None = None) -> RayRun:
    """Run `job`: one record per source in `job.output`, skipping sources recorded by an earlier run.

    `progress(n, total)` is called as each batch of n records is written out (total: the sources to classify).

    Raises:
        ModelError: the model cannot be loaded (checked on this machine before Ray starts).
        MissingDependencyError: Ray is not installed.
        NoSourcesError: the arguments name no scans.
        TumorscanError: the output folder holds other records, the cluster cannot be reached, or the job
            stopped (the records written so far stay: rerun with `resume`).
    """
    model = job.model or default_model_path()
    driver = BatchClassifier(str(model), job.backend, job.threads, job.top_k, job.abstain_threshold)
    folder = RecordFolder(job.output)
    done = folder.done_sources(driver.model, job.resume)
    run = RayRun(listed=list_sources(job.sources), model=str(driver.classifier.identity))
    run.abstention_note = driver.classifier.abstention_unavailable
    if not run.listed.sources and not run.listed.skipped:
        raise NoSourcesError("no scans matched the given files, folders, patterns or URIs.")
    todo = [source for source in run.listed.sources if source not in done]
    skipped = [error for error in run.listed.skipped if error.source not in done]
    run.already_done = len(run.listed.sources) + len(run.listed.skipped) - len(todo) - len(skipped)
    writer = folder.writer(job.output_format, driver.classifier.labels, job.shard_records)
    writer.add(record_line(error, job.top_k, driver.model) for error in skipped)
    run.count([error.code for error in skipped])
    try:
        if todo:
            _classify(job, model, todo, run, writer.add, progress)
    finally:
        writer.close()  # a stopped job keeps every record it received
    run.shards = writer.shards
    return run


def _classify(
    job: RayJob,
    model: Path,
    todo: Sequence[str],
    run: RayRun,
    write: Callable[[Sequence[str]], None],
    progress: Callable[[int, int], None] | None,
) -> None:
    with ray_session(job.address) as ray:
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        run.nodes, run.cpus = len(nodes), int(ray.cluster_resources().get("CPU", 0))
        if run.cpus < job.threads:
            raise TumorscanError(
                f"the Ray cluster has {run.cpus} CPUs, fewer than --threads {job.threads} per actor; "
                "lower --threads or add nodes."
            )
        dataset = _dataset(ray, todo, job, model, run.cpus // job.threads)
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                records = [str(line) for line in batch["record"]]
                write(records)
                run.count([str(name) for name in batch["outcome"]])
                if progress is not None:
                    progress(len(records), len(todo))
        except TumorscanError:
            raise
        except Exception as exc:  # a Ray failure beyond its retries: what was written stays
            first = (str(exc).splitlines() or [""])[0]
            raise TumorscanError(
                f"the Ray job stopped ({type(exc).__name__}: {first}); "
                "the records written so far stay: rerun the same command with --resume to finish."
            ) from exc
