#!/usr/bin/env python3
"""Send studies to tumor-listen from two scanners at once on the loopback, optionally kill -9 it midway.

Writes STUDIES studies of SLICES 256x256 MR slices, starts a receiving PACS (pynetdicom) and `tumor-listen`
(a separate process, spool in a temporary folder), and sends half the studies from SCANNER1 and half from
SCANNER2 at the same time, one association per study; an instance that is not acknowledged (the listener
was killed; the scanners notice within SENDER_TIMEOUT seconds) is sent again once the listener is back.
With --kill-after N, the listener gets SIGKILL after N acknowledged instances and is restarted on the same
spool. Then it waits for the reports and prints a table.
Exit status: 0 when every study got exactly one SR (by SOP Instance UID) referencing exactly its instances.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SENDER_TIMEOUT = 5
"""The scanners' ACSE, DIMSE and network timeouts (s): how soon they notice that the listener is gone."""
LISTEN = "from tumorscan.listen_cli import listen_command; listen_command(prog_name='tumor-listen')"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Run:
    """The PACS, the listener process and the two scanners."""

    def __init__(self, folder: Path, args: argparse.Namespace) -> None:
        from pydicom.uid import ComprehensiveSRStorage
        from pynetdicom import AE, evt

        self.folder, self.args = folder, args
        self.reports: dict[str, Any] = {}
        self.deliveries = 0
        self.acknowledged = 0
        self.lock = threading.Lock()
        self.port, pacs_port = free_port(), free_port()
        ae = AE(ae_title="PACS")
        ae.add_supported_context(ComprehensiveSRStorage)
        self.pacs = ae.start_server(
            ("127.0.0.1", pacs_port), block=False, evt_handlers=[(evt.EVT_C_STORE, self.store)]
        )
        self.command = [
            sys.executable, "-c", LISTEN, "--spool", str(folder / "spool"), "--trust", "SCANNER1", "--trust",
            "SCANNER2", "--destination", f"PACS@127.0.0.1:{pacs_port}", "--port", str(self.port),
            "--quiet-seconds", str(args.quiet), "--retry-seconds", "1", "--log-level", "info",
            *(["--model", args.model] if args.model else []),
        ]  # fmt: skip
        self.listener = self.start_listener()

    def store(self, event: Any) -> int:
        with self.lock:
            self.deliveries += 1
            self.reports[str(event.dataset.SOPInstanceUID)] = event.dataset
        return 0

    def start_listener(self) -> subprocess.Popen[bytes]:
        log = self.args.log or self.folder / "listen.log"
        process = subprocess.Popen(self.command, stderr=open(log, "ab"))  # noqa: SIM115
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return process
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"tumor-listen did not start; see {log}")

    def send(self, calling: str, studies: list[list[Path]]) -> None:
        import pydicom
        from pydicom.uid import MRImageStorage
        from pynetdicom import AE

        for paths in studies:
            pending = list(paths)
            while pending:
                ae = AE(ae_title=calling)
                ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = SENDER_TIMEOUT
                ae.add_requested_context(MRImageStorage)
                assoc = ae.associate("127.0.0.1", self.port, ae_title="TUMORSCAN")
                failed = []
                for path in pending:
                    try:
                        status = assoc.send_c_store(pydicom.dcmread(path))
                    except RuntimeError:  # the association was aborted (the listener was killed)
                        status = None
                    if getattr(status, "Status", None) == 0:
                        with self.lock:
                            self.acknowledged += 1
                    else:
                        failed.append(path)
                if assoc.is_established:
                    assoc.release()
                pending = failed
                if pending:
                    time.sleep(0.5)


def study_sets(folder: Path, studies: int, slices: int) -> dict[str, list[Path]]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import pydicom
    from bench_studies import write_study

    found = {}
    for index in range(studies):
        (folder / f"study{index}").mkdir(parents=True)
        write_study(folder / f"study{index}", 1, slices)
        paths = sorted((folder / f"study{index}").iterdir())
        found[str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)] = paths
    return found


def check(run: Run, studies: dict[str, list[Path]], seconds: float) -> bool:
    import pydicom

    by_study: dict[str, list[Any]] = {}
    for report in run.reports.values():
        by_study.setdefault(str(report.StudyInstanceUID), []).append(report)
    exact = 0
    for uid, paths in studies.items():
        reports = by_study.get(uid, [])
        sources = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}
        evidence = [e for r in reports for e in r.CurrentRequestedProcedureEvidenceSequence]
        found = {
            i.ReferencedSOPInstanceUID
            for e in evidence
            for s in e.ReferencedSeriesSequence
            for i in s.ReferencedSOPSequence
        }
        exact += len(reports) == 1 and found == sources
    print(
        f"studies sent               {len(studies)} x {len(next(iter(studies.values())))} slices, 2 senders"
    )
    print(f"instances acknowledged     {run.acknowledged}")
    killed = f"after {run.args.kill_after} instances" if run.args.kill_after else "no"
    print(f"listener killed (-9)       {killed}")
    print(f"SRs at the PACS            {len(run.reports)} (C-STORE deliveries {run.deliveries})")
    print(f"studies with exactly 1 SR referencing exactly their instances: {exact}/{len(studies)}")
    print(f"seconds                    {seconds:.1f}")
    return exact == len(studies) == len(run.reports)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--quiet", type=float, default=10.0, help="tumor-listen --quiet-seconds")
    parser.add_argument("--kill-after", type=int, default=0, metavar="N", help="kill -9 after N instances")
    parser.add_argument("--model", help="model file (default: the packaged one)")
    parser.add_argument("--log", type=Path, help="append tumor-listen's log here (default: a temporary file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        studies = study_sets(folder / "scans", args.studies, args.slices)
        started = time.perf_counter()
        run = Run(folder, args)
        uids = list(studies)
        half = len(uids) // 2
        jobs = [
            ("SCANNER1", [studies[u] for u in uids[:half]]),
            ("SCANNER2", [studies[u] for u in uids[half:]]),
        ]
        senders = [threading.Thread(target=run.send, args=job) for job in jobs]
        for sender in senders:
            sender.start()
        if args.kill_after:
            while run.acknowledged < args.kill_after and any(s.is_alive() for s in senders):
                time.sleep(0.01)
            run.listener.send_signal(signal.SIGKILL)
            run.listener.wait()
            run.listener = run.start_listener()
        for sender in senders:
            sender.join()
        deadline = time.time() + 120
        while len(run.reports) < len(studies) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(2 * args.quiet)  # a duplicate would come within this
        ok = check(run, studies, time.perf_counter() - started)
        run.listener.terminate()
        run.listener.wait()
        if run.pacs is not None:
            run.pacs.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
