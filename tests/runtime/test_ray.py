"""tumor-infer --engine ray: tumor-infer --jsonl's records, sharded, resumable; Ray only when asked for."""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tumorscan.cli import infer_command
from tumorscan.ray import BatchClassifier, RayJob, classify_on_ray
from tumorscan.shards import RecordFolder

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray is not installed: pip install -e '.[ray]'")


@pytest.fixture
def scans(sample_test: Path, tmp_path: Path) -> Path:
    """The sample test scans, a file that is not an image, an empty PNG and a dangling link."""
    folder = tmp_path / "scans"
    shutil.copytree(sample_test, folder)
    (folder / "broken.jpg").write_bytes(b"not a scan")
    (folder / "empty.png").write_bytes(b"")
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    return folder


def jsonl(*arguments: str) -> list[str]:
    """tumor-infer --jsonl's lines for the arguments (the reference)."""
    done = CliRunner().invoke(infer_command, [*arguments, "--jsonl"], catch_exceptions=False)
    assert done.exit_code == 1, done.output  # the bad files fail
    return [line for line in done.stdout.splitlines() if line.startswith("{")]


def shard_lines(folder: Path) -> list[str]:
    return [line for shard in sorted(folder.glob("part-*.jsonl")) for line in shard.read_text().splitlines()]


def test_batch_classifier_gives_tumor_infers_records(scans: Path, tmp_path: Path) -> None:
    reference = jsonl(str(scans), str(tmp_path / "vanished.jpg"))
    sources = [json.loads(line)["source"] for line in reference]
    records = [json.loads(line) for line in reference]
    assert {r["status"] for r in records} == {"ok", "error"} and any(r.get("abstain") for r in records)
    codes = sorted(r["error"]["code"] for r in records if r["status"] == "error")
    assert codes == ["dangling_link", "no_such_file", "unsupported_format", "unsupported_format"]
    classify = BatchClassifier()
    out = classify({"source": np.array(sources, dtype=object)})
    assert out["record"] == reference
    assert out["source"] == sources
    assert out["outcome"].count("abstained") == sum(1 for r in records if r.get("abstain"))


def test_bytes_and_uris_name_each_record_by_its_source(scans: Path) -> None:
    classify = BatchClassifier(top_k=2)
    paths = [str(scans / "broken.jpg"), *map(str, sorted(scans.rglob("image(1).jpg")))]
    by_path = classify({"source": paths})["record"]
    by_bytes = classify({"source": paths, "bytes": [Path(p).read_bytes() for p in paths]})["record"]
    assert by_bytes == by_path
    uris = [f"file://{p}" for p in paths] + [f"file://{scans}/missing.png"]
    by_uri = [json.loads(line) for line in classify({"source": uris})["record"]]
    assert [r["source"] for r in by_uri] == uris
    for uri_record, line in zip(by_uri, by_path, strict=False):
        path_record = json.loads(line)
        assert uri_record.get("probabilities") == path_record.get("probabilities")
        assert uri_record.get("error", {}).get("code") == path_record.get("error", {}).get("code")
    assert by_uri[-1]["error"]["code"] == "no_such_file" and uris[-1] in by_uri[-1]["error"]["message"]


def test_uri_folders_are_listed_like_local_ones(scans: Path) -> None:
    from tumorscan.sources import list_sources

    local = list_sources([str(scans)])
    remote = list_sources([f"file://{scans}"])
    files = [f"file://{p}" for p in local.sources if not p.endswith("gone.jpg")]  # a link to nothing
    assert remote.sources == files and len(files) == 10 and not remote.skipped


def _shard(folder: Path, model: str, sources: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"source": s, "status": "ok", "model": model}) for s in sources]
    (folder / "part-old-00000.jsonl").write_text("\n".join(lines) + "\n")


def test_an_output_folder_with_records_is_refused_unless_resume_and_the_same_model(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert RecordFolder(str(out)).done_sources("m.tflite@aaa", resume=False) == frozenset()
    _shard(out, "m.tflite@aaa", ["a.png", "b.png"])
    (out / ".part-x-00001.jsonl.partial").write_text('{"source": "c.png"')  # a stopped job's half shard
    with pytest.raises(Exception, match=r"already holds 2 records .*pass --resume"):
        RecordFolder(str(out)).done_sources("m.tflite@aaa", resume=False)
    with pytest.raises(Exception, match=r"records of another model .*m\.tflite@aaa"):
        RecordFolder(str(out)).done_sources("other.tflite@bbb", resume=True)
    assert RecordFolder(str(out)).done_sources("renamed.tflite@aaa", resume=True) == {"a.png", "b.png"}
    assert not list(out.glob(".*.partial"))
    (out / "part-old-00002.jsonl").write_text("not json\n")
    with pytest.raises(Exception, match="not a shard of tumor-infer records"):
        RecordFolder(str(out)).existing()


def test_shards_are_written_whole_in_both_formats(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    lines = [
        json.dumps({"source": "a.png", "status": "ok", "label": "x", "confidence": 0.9,
                    "probabilities": {"x": 0.9, "y": 0.1}, "abstain": False, "model": "m@1"}),
        json.dumps({"source": "b.png", "status": "error",
                    "error": {"code": "bad_image", "message": "b.png: bad"}, "model": "m@1"}),
    ] * 3  # fmt: skip
    for output_format in ("jsonl", "parquet"):
        folder = RecordFolder(str(tmp_path / output_format))
        writer = folder.writer(output_format, ["x", "y"], shard_records=4)
        writer.add(lines)
        assert writer.shards == 1  # 4 written, 2 pending
        writer.close()
        assert (writer.shards, writer.written) == (2, 6)
        assert sum(folder.existing().models.values()) == 6
    assert shard_lines(tmp_path / "jsonl") == lines
    rows = pq.read_table(sorted((tmp_path / "parquet").glob("*.parquet"))[0]).to_pylist()
    assert rows[0]["p_x"] == 0.9 and rows[0]["abstain"] is False and rows[1]["error_code"] == "bad_image"


def _imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_without_engine_ray_is_never_imported(sample_test: Path) -> None:
    run = (
        "import tumorscan.ray, tumorscan.ray_cli\nfrom tumorscan.cli import infer_command\n"
        f"infer_command.main([{str(sample_test)!r}, '--jsonl'], standalone_mode=False)"
    )
    modules = _imported_after(run)
    assert "ai_edge_litert" in modules and not modules & {"ray", "pyarrow", "pandas"}


def test_without_ray_installed_the_message_names_the_extra(sample_test: Path, tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['ray'] = None\nfrom tumorscan.cli import infer_command\n"
        f"infer_command([{str(sample_test)!r}, '--engine', 'ray', '--output', {str(tmp_path / 'out')!r}])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "--engine ray needs the Python package 'ray'" in done.stderr
    assert "pip install 'tumorscan[ray]'" in done.stderr


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["--engine", "ray"], "pass --output DIR"),
        (["--engine", "ray", "--output", "-"], "pass --output DIR"),
        (["--engine", "ray", "--output", "OUT", "--csv"], "--jsonl (the default) or --parquet"),
        (["--engine", "ray", "--output", "OUT", "--explain", "H"], "--explain runs without --engine ray"),
        (["--engine", "ray", "--output", "OUT", "--mirror"], "--mirror runs without --engine ray"),
        (["--resume", "--output", "OUT"], "go with --engine ray"),
        (["--parquet"], "go with --engine ray"),
        (["--ray-address", "auto"], "go with --engine ray"),
    ],
)
def test_options_that_do_not_fit_are_usage_errors(
    arguments: list[str], says: str, sample_test: Path, tmp_path: Path
) -> None:
    arguments = [str(tmp_path / a) if a in ("OUT", "H") else a for a in arguments]
    result = CliRunner().invoke(infer_command, [str(sample_test), *arguments])
    assert result.exit_code == 2 and says in result.output, result.output


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@needs_ray
def test_an_unreachable_cluster_is_named_at_once(sample_test: Path, tmp_path: Path) -> None:
    address = f"127.0.0.1:{_closed_port()}"
    arguments = [
        str(sample_test),
        "--engine",
        "ray",
        "--output",
        str(tmp_path / "out"),
        "--ray-address",
        address,
    ]
    result = CliRunner().invoke(infer_command, arguments)
    assert result.exit_code == 1 and f"could not reach the Ray cluster at {address}" in result.output
    assert "ray start --head" in result.output and result.exception is not None
    assert isinstance(result.exception, SystemExit)


@needs_ray
def test_engine_ray_writes_tumor_infers_records_once_and_resumes(scans: Path, tmp_path: Path) -> None:
    reference = jsonl(str(scans))
    out = tmp_path / "out"
    arguments = [str(scans), "--engine", "ray", "--output", str(out), "--no-progress"]
    result = CliRunner().invoke(infer_command, arguments)
    assert result.exit_code == 1, result.output  # some scans failed, as with tumor-infer
    assert sorted(shard_lines(out)) == sorted(reference)
    assert "11 scans: 8 predicted, 3 failed" in result.output and "on Ray (1 node" in result.output
    refused = CliRunner().invoke(infer_command, arguments)
    assert refused.exit_code == 1 and "already holds 11 records" in refused.output
    again = CliRunner().invoke(infer_command, [*arguments, "--resume"])
    assert "0 scans" in again.output and "11 already recorded" in again.output, again.output
    assert sorted(shard_lines(out)) == sorted(reference)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray for the tests below (tumorscan.ray uses a Ray the caller started)."""
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    yield
    ray.shutdown()


@needs_ray
def test_resume_classifies_only_what_is_missing(local_ray: None, scans: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = [str(scans / "broken.jpg"), str(scans / "glioma_tumor")]
    run = classify_on_ray(RayJob(sources=first, output=str(out)))
    assert sum(run.outcomes.values()) == 3 and run.already_done == 0
    seen: list[tuple[int, int]] = []
    run = classify_on_ray(
        RayJob(sources=[str(scans)], output=str(out), resume=True, block_sources=2, shard_records=3),
        progress=lambda count, total: seen.append((count, total)),
    )
    assert run.already_done == 3 and sum(run.outcomes.values()) == 8
    assert sum(count for count, _ in seen) == 8 and {total for _, total in seen} == {8}
    sources = [json.loads(line)["source"] for line in shard_lines(out)]
    assert len(sources) == len(set(sources)) == 11


@needs_ray
def test_parquet_shards_hold_the_same_records(local_ray: None, scans: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    reference = {json.loads(line)["source"]: json.loads(line) for line in jsonl(str(scans))}
    run = classify_on_ray(RayJob(sources=[str(scans)], output=str(tmp_path / "out"), output_format="parquet"))
    rows = pq.read_table(tmp_path / "out").to_pylist()
    assert run.shards == 1 and sorted(row["source"] for row in rows) == sorted(reference)
    for row in rows:
        want = reference[row["source"]]
        assert row["status"] == want["status"] and row["label"] == want.get("label")
        assert row["abstain"] == want.get("abstain") and row["error_code"] == want.get("error", {}).get(
            "code"
        )
