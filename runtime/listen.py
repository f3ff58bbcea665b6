"""`tumor-listen`: a DICOM Storage SCP that classifies each study once it is quiet and sends back its SR.

1. Associations are accepted only from the trusted calling AE titles (others are rejected at
   association, by pynetdicom's `require_calling_aet`).
2. Each C-STORE is written to the spool and fsynced before it is answered (`tumorscan.spool`);
   a full disk answers 0xA700 (out of resources) and a malformed instance 0xC000 (cannot understand):
   the sender keeps what was not acknowledged.
3. A study is complete after `quiet_seconds` without a new instance (counted from start-up for studies
   found in the spool), or `max_wait_seconds` after its first instance when it never goes quiet.
4. One worker thread classifies each batch (`tumorscan.studies`), writes its Comprehensive SR
   (`tumorscan.dicom_sr`) to the outbox, then sends it by C-STORE to the destination, retrying every
   `retry_seconds` until it is accepted. After a `kill -9`, a restart resumes each batch from its folder:
   a study answered before is not answered again; an SR whose sending was cut is sent again with the
   same SOP Instance UID, which a PACS stores once.

Memory stays bounded: instances go to disk as they arrive (pynetdicom holds at most one dataset per
association, `maximum_associations` at a time) and one batch is classified at a time. The log names
UIDs and AE titles, never patient data.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .classifier import Classifier
from .dicom_sr import collect, write_report
from .errors import MissingDependencyError, TumorscanError
from .spool import Spool, SpoolError
from .studies import study_outputs

LOG = logging.getLogger("tumorscan.listen")
STATUS_OK = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000


class ListenError(TumorscanError):
    """The listener cannot start or a destination is malformed."""

    code = "listen_error"


@dataclass(frozen=True)
class Destination:
    """Where SRs go: a Storage SCP's AE title, host and port."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        """AE@HOST:PORT.

        Raises:
            ListenError: not in that form.
        """
        ae_title, _, address = text.partition("@")
        host, _, port = address.rpartition(":")
        if not ae_title or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ListenError(f"{text!r}: give the destination as AE@HOST:PORT, e.g. PACS@10.0.0.5:104.")
        return cls(ae_title, host, int(port))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class ListenerConfig:
    """What tumor-listen is told (the command's option defaults live here)."""

    spool: Path
    trusted: tuple[str, ...]
    destination: Destination | None = None
    ae_title: str = "TUMORSCAN"
    host: str = "127.0.0.1"
    port: int = 11112
    quiet_seconds: float = 10.0
    max_wait_seconds: float = 600.0
    retry_seconds: float = 30.0
    maximum_associations: int = 10
    poll_seconds: float = 0.5


def _pynetdicom() -> Any:
    try:
        import pynetdicom
    except ImportError as exc:
        raise MissingDependencyError("pynetdicom", "dicom", "Listening for DICOM studies") from exc
    return pynetdicom


def _write_instance(event: Any) -> Callable[[int], None]:
    """Write a received dataset as a DICOM file: preamble, file meta, then the dataset as it came."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    def write(handle: int) -> None:
        header = DicomBytesIO()
        header.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(header, event.file_meta)
        with open(handle, "wb", closefd=False) as stream:
            stream.write(header.getvalue())
            stream.write(event.request.DataSet.getvalue())

    return write


class Listener:
    """The Storage SCP, its spool and its worker thread."""

    def __init__(self, config: ListenerConfig, classifier: Classifier) -> None:
        self.config = config
        self.classifier = classifier
        self.spool = Spool(config.spool)
        self.started = time.time()
        self.first_seen: dict[str, float] = {}
        self.next_try: dict[str, float] = {}
        self._stop = threading.Event()
        self._server: Any = None
        self._worker = threading.Thread(target=self._work, name="tumor-listen worker", daemon=True)

    def handle_store(self, event: Any) -> int:
        """Answer one C-STORE: spool it first; a typed, logged error otherwise."""
        calling = event.assoc.requestor.ae_title
        try:
            dataset = event.dataset
            study_uid, sop_uid = str(dataset.StudyInstanceUID), str(dataset.SOPInstanceUID)
            self.spool.store(study_uid, sop_uid, _write_instance(event))
        except SpoolError as exc:
            LOG.error("error %s from %s: %s", exc.code, calling, exc)
            return STATUS_OUT_OF_RESOURCES
        except Exception as exc:  # a malformed dataset: pydicom raises many types, and UIDs may be missing
            kept = self.spool.reject(bytes(event.request.DataSet.getvalue()))
            LOG.error(
                "error bad_instance from %s: cannot read the instance (%s); kept as %s", calling, exc, kept
            )
            return STATUS_CANNOT_UNDERSTAND
        self.first_seen.setdefault(study_uid, time.time())
        LOG.debug("stored %s of study %s from %s", sop_uid, study_uid, calling)
        return STATUS_OK

    def start(self) -> None:
        pynetdicom = _pynetdicom()
        from pydicom.uid import AllTransferSyntaxes
        from pynetdicom.presentation import AllStoragePresentationContexts

        ae = pynetdicom.AE(ae_title=self.config.ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, AllTransferSyntaxes)
        ae.require_calling_aet = list(self.config.trusted)
        ae.maximum_associations = self.config.maximum_associations
        handlers = [(pynetdicom.evt.EVT_C_STORE, self.handle_store)]
        try:
            address = (self.config.host, self.config.port)
            self._server = ae.start_server(address, block=False, evt_handlers=handlers)
        except OSError as exc:
            raise ListenError(
                f"cannot listen on {self.config.host}:{self.config.port} ({exc.strerror})."
            ) from exc
        self._worker.start()
        trusted = ", ".join(self.config.trusted)
        LOG.info("listening as %s on %s:%d for %s", self.config.ae_title, *address, trusted)

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        if self._worker.is_alive():
            self._worker.join()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                self.work_once()
            except Exception:  # a bug must not stop the node: log it and go on
                LOG.exception("error unexpected_error in the worker; going on")
            self._stop.wait(self.config.poll_seconds)

    def work_once(self) -> None:
        """Take quiet studies, classify the batches taken, send the SRs waiting in the outbox."""
        now = time.time()
        quiet_since = now - self.config.quiet_seconds
        if self.started > quiet_since:  # studies found at start-up wait one quiet period from the start
            quiet_since = -math.inf
        oldest = now - self.config.max_wait_seconds
        for study in self.spool.quiet_studies(quiet_since, self.first_seen, oldest):
            self.first_seen.pop(study.name, None)
            self.spool.take(study)
        for batch in self.spool.batches("processing"):
            self.process(batch)
        for batch in self.spool.batches("outbox"):
            if self.next_try.get(batch.name, 0.0) <= now:
                self.send(batch)

    def process(self, batch: Path) -> None:
        """Classify one batch and put its SR in the outbox (skipped if it is there already)."""
        outbox = self.spool.folder("outbox") / batch.name
        answered = outbox.exists() or (self.spool.folder("sent") / batch.name).exists()
        if not answered:
            files = sorted(batch.glob("*.dcm"))
            outputs = list(study_outputs(self.classifier, files, top_k=1))
            partial = outbox.with_name(batch.name + ".partial")
            try:
                model = self.classifier.identity
                written = [write_report(results, model, partial) for results in collect(outputs)]
            except TumorscanError as exc:
                LOG.error("error %s: %s; batch %s kept in failed/", exc.code, exc, batch.name)
                self.spool.move(batch, "failed")
                return
            if written:
                partial.rename(outbox)
            LOG.info("classified batch %s: %d instances, %d reports", batch.name, len(files), len(written))
        self.spool.move(batch, "done")

    def send(self, batch: Path) -> None:
        """C-STORE each SR of an outbox batch to the destination; retry later on failure."""
        destination = self.config.destination
        if destination is None:
            return
        try:
            for report in sorted(batch.glob("*.dcm")):
                self._send_one(report, destination)
        except TumorscanError as exc:
            self.next_try[batch.name] = time.time() + self.config.retry_seconds
            LOG.error("error %s: %s; retrying in %g s", exc.code, exc, self.config.retry_seconds)
            return
        self.spool.move(batch, "sent")
        LOG.info("sent the report of batch %s to %s", batch.name, destination)

    def _send_one(self, report: Path, destination: Destination) -> None:
        pynetdicom = _pynetdicom()
        import pydicom

        dataset = pydicom.dcmread(report)
        ae = pynetdicom.AE(ae_title=self.config.ae_title)
        ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
        assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
        if not assoc.is_established:
            raise DestinationError(f"{destination} did not accept an association")
        try:
            status = assoc.send_c_store(dataset)
        finally:
            assoc.release()
        code = getattr(status, "Status", None)
        if code != STATUS_OK:
            raise DestinationError(f"{destination} answered the C-STORE of {report.name} with status {code}")


class DestinationError(TumorscanError):
    """The destination is down or refused a report (it is retried)."""

    code = "destination_error"
