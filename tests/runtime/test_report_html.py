"""`tumor-infer --report`: the HTML document (summary, one row per input, escaping, nothing fetched)."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from tumorscan.classifier import ModelIdentity, Prediction, PredictionError
from tumorscan.cli import infer_command
from tumorscan.report_html import ReportRow, render_report, report_rows

IDENTITY = ModelIdentity("m.tflite", "0123456789ab", "cnn2", "int8", "tflite")
LABELS = ("glioma_tumor", "no_tumor")


class Rows(HTMLParser):
    """Collects the body rows' attributes and every tag and attribute naming something outside the page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str | None]] = []
        self.external: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "tr" and "data-status" in values:
            self.rows.append(values)
        self.scripts += tag == "script"
        for name in ("src", "href"):
            value = values.get(name)
            if value is not None and not value.startswith("data:"):
                self.external.append(f"{tag} {name}={value}")


def _parse(document: str) -> Rows:
    parser = Rows()
    parser.feed(document)
    return parser


def _prediction(source: str, label: str, confidence: float, abstain: bool) -> Prediction:
    other = LABELS[1] if label == LABELS[0] else LABELS[0]
    reasons = ("low_confidence",) if abstain else ()
    probabilities = {label: confidence, other: 1 - confidence}
    return Prediction(source, label, confidence, probabilities, IDENTITY, abstain=abstain, reasons=reasons)


def test_document_summary_rows_and_escaping() -> None:
    hostile = 'scans/<img src=x onerror=alert(1)>"&\u202e.png'
    pixels = np.full((32, 32, 3), 128, dtype=np.uint8)
    done = [
        (Path("a.png"), _prediction("a.png", "glioma_tumor", 0.9, False), pixels),
        (Path(hostile), _prediction(hostile, "no_tumor", 0.4, True), pixels),
        (Path("b.txt"), PredictionError("b.txt", "not_an_image", "b.txt: <not> an image"), None),
    ]
    document = render_report(report_rows(done), LABELS, IDENTITY)
    parsed = _parse(document)
    assert [row["data-status"] for row in parsed.rows] == ["answered", "abstained", "error"]
    assert [row["data-label"] for row in parsed.rows] == ["glioma_tumor", "no_tumor", ""]
    assert parsed.external == []  # only inline images: nothing is fetched
    assert parsed.scripts == 1
    assert (
        "<img src=x" not in document
        and "&lt;img src=x onerror=alert(1)&gt;&quot;&amp;\\u202e.png" in document
    )
    assert "&lt;not&gt; an image" in document
    summary = re.sub(r"<[^>]+>", " ", document.split('<ul class="summary">')[1].split("</ul>")[0])
    expected = "3 scans 1 glioma_tumor 1 no_tumor 1 abstained 1 errors 1 not_an_image"
    assert " ".join(summary.split()) == expected
    assert "sha256 0123456789ab" in document
    assert document.count('<img class="thumb" src="data:image/jpeg;base64,') == 2


def test_heatmaps_are_kept_in_templates_and_unknown_abstention_is_said() -> None:
    prediction = Prediction("a.png", "no_tumor", 0.7, {"glioma_tumor": 0.3, "no_tumor": 0.7}, IDENTITY)
    row = ReportRow(prediction, None, "data:image/jpeg;base64,AAAA")
    document = render_report([row], LABELS, IDENTITY)
    assert '<template class="heatmap"><img src="data:image/jpeg;base64,AAAA"' in document
    assert "<b>n/a</b> abstained" in document and "<td>n/a</td>" in document


def test_infer_report_has_one_row_per_input(tflite_fp32: Path, sample_test: Path, tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    shutil.copytree(sample_test, scans)
    (scans / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    report = tmp_path / "report.html"
    args = [str(scans), str(scans / "absent.jpg"), "--model", str(tflite_fp32), "--jsonl"]
    result = CliRunner().invoke(infer_command, [*args, "--report", str(report)], catch_exceptions=False)
    assert result.exit_code == 1  # two inputs fail; the report still has them
    assert f"wrote report {report}" in result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    rows = _parse(report.read_text(encoding="utf-8")).rows
    assert len(rows) == len(records) == 10
    assert [row["data-status"] for row in rows].count("error") == 2
    assert [row["data-label"] for row in rows if row["data-status"] != "error"] == [
        record["label"] for record in records if "label" in record
    ]
