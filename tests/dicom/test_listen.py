"""tumor-listen on the loopback: pynetdicom as the sending scanners and as the receiving PACS."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import ComprehensiveSRStorage, MRImageStorage

from tumorscan.classifier import Classifier
from tumorscan.listen import Destination, Listener, ListenerConfig
from tumorscan.spool import SpoolError

WAIT = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Pacs:
    """A Storage SCP that keeps the SRs it receives."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reports: dict[str, pydicom.Dataset] = {}
        self.stores = 0
        ae = AE(ae_title="PACS")
        ae.add_supported_context(ComprehensiveSRStorage)
        self.server = ae.start_server(
            ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self.store)]
        )

    def store(self, event: Any) -> int:
        self.stores += 1
        dataset = event.dataset
        self.reports[str(dataset.SOPInstanceUID)] = dataset
        return 0

    def wait_for(self, count: int) -> list[pydicom.Dataset]:
        deadline = time.time() + WAIT
        while len(self.reports) < count and time.time() < deadline:
            time.sleep(0.1)
        return list(self.reports.values())


def send(paths: list[Path], port: int, calling: str = "SCANNER1") -> list[int]:
    """C-STORE the files as a scanner would; the statuses, or -1 each when the association fails."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(MRImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="TUMORSCAN")
    if not assoc.is_established:
        return [-1] * len(paths)
    statuses = [int(assoc.send_c_store(pydicom.dcmread(path)).Status) for path in paths]
    assoc.release()
    return statuses


def referenced(report: pydicom.Dataset) -> set[str]:
    evidence = report.CurrentRequestedProcedureEvidenceSequence
    return {
        i.ReferencedSOPInstanceUID
        for e in evidence
        for s in e.ReferencedSeriesSequence
        for i in s.ReferencedSOPSequence
    }


@pytest.fixture(scope="module")
def classifier(tiny_tflite: Path) -> Classifier:
    return Classifier.load(tiny_tflite)


@pytest.fixture
def node(tmp_path: Path, classifier: Classifier) -> Iterator[Callable[..., Listener]]:
    started: list[Listener] = []

    def start(destination_port: int | None, **options: Any) -> Listener:
        destination = None if destination_port is None else Destination("PACS", "127.0.0.1", destination_port)
        settings = {"quiet_seconds": 1.0, "poll_seconds": 0.1, "retry_seconds": 0.5, **options}
        config = ListenerConfig(
            tmp_path / "spool", ("SCANNER1", "SCANNER2"), destination, port=free_port(), **settings
        )
        listener = Listener(config, classifier)
        listener.start()
        started.append(listener)
        return listener

    yield start
    for listener in started:
        listener.stop()


def _studies(
    folder: Path, writer: Callable[..., list[Path]], count: int, slices: int
) -> dict[str, list[Path]]:
    studies = {}
    for index in range(count):
        uid = generate_uid()
        studies[uid] = writer(folder / str(index), uid, slices)
    return studies


def test_two_senders_at_once_get_one_report_per_study(
    node: Callable[..., Listener], tmp_path: Path, series_writer: Callable[..., list[Path]]
) -> None:
    pacs = Pacs(free_port())
    listener = node(pacs.port)
    studies = _studies(tmp_path / "scans", series_writer, 4, 6)
    uids = list(studies)
    jobs = [uids[:2], uids[2:]]
    statuses: list[int] = []
    senders = [
        threading.Thread(
            target=lambda job=job, aet=aet: [
                statuses.extend(send(studies[u], listener.config.port, aet)) for u in job
            ]
        )
        for job, aet in zip(jobs, ("SCANNER1", "SCANNER2"), strict=True)
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert statuses == [0] * 24

    reports = pacs.wait_for(4)
    pacs.server.shutdown()
    assert len(reports) == 4
    for report in reports:
        sources = studies[str(report.StudyInstanceUID)]
        assert referenced(report) == {str(pydicom.dcmread(p).SOPInstanceUID) for p in sources}
        assert report.PatientID == "PAT-0042"
    assert len(list((tmp_path / "spool" / "sent").iterdir())) == 4


def test_unknown_ae_title_is_refused_at_association(
    node: Callable[..., Listener], tmp_path: Path, series_writer: Callable[..., list[Path]]
) -> None:
    listener = node(None)
    paths = series_writer(tmp_path / "scans", generate_uid(), 2)
    assert send(paths, listener.config.port, calling="INTRUDER") == [-1, -1]
    assert list((tmp_path / "spool" / "incoming").iterdir()) == []


def test_malformed_instance_and_full_disk_are_typed_and_the_rest_go_on(
    node: Callable[..., Listener],
    tmp_path: Path,
    series_writer: Callable[..., list[Path]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tumorscan.listen")
    listener = node(None, quiet_seconds=60.0)
    good = series_writer(tmp_path / "scans", generate_uid(), 3)
    broken = tmp_path / "broken.dcm"
    dataset = pydicom.dcmread(good[0])
    del dataset.StudyInstanceUID
    dataset.SOPInstanceUID = generate_uid()
    dataset.save_as(broken)
    assert send([good[0], broken, good[1]], listener.config.port) == [0, 0xC000, 0]
    assert len(list((tmp_path / "spool" / "rejected").iterdir())) == 1

    def full(*_: Any) -> Path:
        raise SpoolError("cannot store instance x (No space left on device); check the spool's disk.")

    monkeypatch.setattr(listener.spool, "store", full)
    assert send([good[2]], listener.config.port) == [0xA700]
    assert (
        "error bad_instance from SCANNER1" in caplog.text and "error spool_error from SCANNER1" in caplog.text
    )
    (study,) = (tmp_path / "spool" / "incoming").iterdir()
    assert len(list(study.iterdir())) == 2  # the two good instances, acknowledged and on disk


def test_a_destination_that_is_down_gets_the_report_later(
    node: Callable[..., Listener],
    tmp_path: Path,
    series_writer: Callable[..., list[Path]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tumorscan.listen")
    port = free_port()
    listener = node(port, quiet_seconds=0.5)
    paths = series_writer(tmp_path / "scans", generate_uid(), 3)
    assert send(paths, listener.config.port) == [0, 0, 0]
    deadline = time.time() + WAIT
    while "error destination_error" not in caplog.text and time.time() < deadline:
        time.sleep(0.1)
    assert "error destination_error" in caplog.text and "retrying in 0.5 s" in caplog.text
    assert len(list((tmp_path / "spool" / "outbox").iterdir())) == 1

    pacs = Pacs(port)
    (report,) = pacs.wait_for(1)
    pacs.server.shutdown()
    assert referenced(report) == {str(pydicom.dcmread(p).SOPInstanceUID) for p in paths}


@pytest.mark.slow
def test_twenty_studies_from_two_senders_survive_a_kill_9() -> None:
    """scripts/check_listen.py: 20 studies of 30 slices; the listener killed after 300 instances."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "scripts" / "check_listen.py"
    result = subprocess.run(
        [sys.executable, str(script), "--kill-after", "300"], capture_output=True, text=True, timeout=900
    )
    print(result.stdout, result.stderr)
    assert result.returncode == 0
    assert "SRs at the PACS            20 (" in result.stdout
    assert "referencing exactly their instances: 20/20" in result.stdout


def test_a_sender_that_drops_mid_transfer_and_a_study_that_never_goes_quiet(
    node: Callable[..., Listener], tmp_path: Path, series_writer: Callable[..., list[Path]]
) -> None:
    """What was acknowledged before an abort is kept; max_wait_seconds takes a study never quiet."""
    pacs = Pacs(free_port())
    listener = node(pacs.port, quiet_seconds=3600.0, max_wait_seconds=2.0)
    paths = series_writer(tmp_path / "scans", generate_uid(), 4)
    ae = AE(ae_title="SCANNER1")
    ae.add_requested_context(MRImageStorage)
    assoc = ae.associate("127.0.0.1", listener.config.port, ae_title="TUMORSCAN")
    assert [int(assoc.send_c_store(pydicom.dcmread(p)).Status) for p in paths[:2]] == [0, 0]
    assoc.abort()  # the sender drops mid-study

    (report,) = pacs.wait_for(1)  # taken by max_wait_seconds although the quiet period is an hour
    pacs.server.shutdown()
    assert referenced(report) == {str(pydicom.dcmread(p).SOPInstanceUID) for p in paths[:2]}


def test_a_batch_whose_report_cannot_be_built_is_kept_and_the_node_goes_on(
    node: Callable[..., Listener],
    tmp_path: Path,
    series_writer: Callable[..., list[Path]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import tumorscan.listen
    from tumorscan.dicom_sr import ReportError

    def refuse(*_: Any) -> Path:
        raise ReportError("study x: cannot build its Structured Report (test).")

    monkeypatch.setattr(tumorscan.listen, "write_report", refuse)
    caplog.set_level(logging.INFO, logger="tumorscan.listen")
    listener = node(None, quiet_seconds=0.5)
    assert send(series_writer(tmp_path / "scans", generate_uid(), 2), listener.config.port) == [0, 0]
    deadline = time.time() + WAIT
    while not list((tmp_path / "spool" / "failed").iterdir()) and time.time() < deadline:
        time.sleep(0.1)
    (kept,) = (tmp_path / "spool" / "failed").iterdir()
    assert len(list(kept.glob("*.dcm"))) == 2 and "error bad_report" in caplog.text


def test_the_command_checks_its_options(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tumorscan.listen_cli import listen_command

    help_text = CliRunner().invoke(listen_command, ["--help"]).output
    assert "--trust" in help_text and "--quiet-seconds" in help_text
    arguments = ["--spool", str(tmp_path), "--trust", "SCANNER1", "--destination", "PACS:104"]
    result = CliRunner().invoke(listen_command, arguments)
    assert result.exit_code == 2 and "AE@HOST:PORT" in result.output
    result = CliRunner().invoke(listen_command, ["--spool", str(tmp_path)])
    assert result.exit_code == 2 and "--trust" in result.output
