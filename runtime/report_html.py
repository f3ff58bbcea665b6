"""`tumor-infer --report`: one self-contained HTML file to look at a run (no network, no server).

A summary on top (counts per answer, abstentions, errors, the model), then one table row per input: a
thumbnail of the pixels the model saw, the answer and confidence, abstention and its reasons, or the error.
With `--explain` each row also carries its heatmap, held in a `<template>` (not decoded until clicked).
Images are inline JPEG data URIs; every name and message is HTML-escaped and shown with visible escapes.
"""

from __future__ import annotations

import base64
import html
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from .classifier import ModelIdentity, Prediction, Result
from .files import atomic_text_writer
from .names import printable
from .report_page import SCRIPT, STYLE

THUMBNAIL_SIDE = 96
"""Thumbnails are at most this many pixels on a side (shown at 64 px; sharper on dense screens)."""
THUMBNAIL_QUALITY = 70
HEATMAP_QUALITY = 80


@dataclass(frozen=True)
class ReportRow:
    """One input of the report: its result and, when known, its images as data URIs."""

    result: Result
    thumbnail: str | None = None
    heatmap: str | None = None


def jpeg_uri(image: Image.Image, max_side: int | None, quality: int) -> str:
    """`image` as an RGB JPEG data URI, shrunk to fit `max_side` (None: full size)."""
    image = image.convert("RGB")
    if max_side is not None:
        image.thumbnail((max_side, max_side))
    buffer = BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnail_uri(pixels: NDArray[np.uint8]) -> str:
    """A small JPEG of the H x W x 3 pixels the model saw."""
    return jpeg_uri(Image.fromarray(np.asarray(pixels, dtype=np.uint8)), THUMBNAIL_SIDE, THUMBNAIL_QUALITY)


def heatmap_uri(png: bytes) -> str:
    """A heatmap overlay PNG (`tumorscan.explain.overlay_png`) as a JPEG data URI, at full size."""
    with Image.open(BytesIO(png)) as image:
        return jpeg_uri(image, None, HEATMAP_QUALITY)


def report_rows(
    done: Sequence[tuple[Path, Result, Any]], heatmaps: Mapping[int, bytes] | None = None
) -> list[ReportRow]:
    """One row per outcome (path, result, pixels or None), with heatmap PNGs by outcome index."""
    heatmaps = heatmaps or {}
    rows = []
    for index, (_, result, pixels) in enumerate(done):
        thumbnail = thumbnail_uri(pixels) if pixels is not None else None
        heatmap = heatmap_uri(heatmaps[index]) if index in heatmaps else None
        rows.append(ReportRow(result, thumbnail, heatmap))
    return rows


def _status(result: Result) -> str:
    if not isinstance(result, Prediction):
        return "error"
    return "abstained" if result.abstain else "answered"


def _text(text: str) -> str:
    """Escaped for HTML, with invisible and control characters as visible escapes."""
    return html.escape(printable(text), quote=True)


def _summary(rows: Sequence[ReportRow], identity: ModelIdentity) -> str:
    predictions = [row.result for row in rows if isinstance(row.result, Prediction)]
    errors = Counter(row.result.code for row in rows if not isinstance(row.result, Prediction))
    items = [f"<li><b>{len(rows)}</b> scans</li>"]
    items += [
        f'<li class="label"><b>{count}</b> {_text(label)}</li>'
        for label, count in sorted(Counter(p.label for p in predictions).items())
    ]
    abstained = sum(1 for p in predictions if p.abstain)
    can_abstain = any(p.abstain is not None for p in predictions)
    items.append(f"<li><b>{abstained if can_abstain else 'n/a'}</b> abstained</li>")
    items.append(f"<li><b>{sum(errors.values())}</b> errors</li>")
    items += [f"<li><b>{count}</b> {_text(code)}</li>" for code, count in sorted(errors.items())]
    return f'<p class="model">Model: {_text(str(identity))}</p>\n<ul class="summary">{"".join(items)}</ul>'


def _row(index: int, row: ReportRow) -> str:
    result, status = row.result, _status(row.result)
    source = _text(result.source)
    thumb = (
        f'<img class="thumb" src="{row.thumbnail}" alt="scan {source}" data-show="heatmap">'
        if row.thumbnail
        else ""
    )
    heat = ""
    if row.heatmap:
        heat = '<button type="button" data-show="heatmap">heatmap</button><template class="heatmap">'
        heat += f'<img src="{row.heatmap}" alt=""></template>'
    if isinstance(result, Prediction):
        label, confidence, error = _text(result.label), f"{result.confidence:.3f}", ""
        abstain = "n/a" if result.abstain is None else ("yes" if result.abstain else "no")
        reasons = _text(", ".join(result.reasons))
    else:
        label, confidence, abstain, reasons = "", "", "", ""
        error = f'<span class="tag error">{_text(result.code)}</span> ' + _text(
            result.message.removeprefix(f"{result.source}: ")
        )
    return (
        f'<tr class="{status}" data-index="{index}" data-status="{status}" data-label="{label}">'
        f'<td class="num">{index + 1}</td><td>{thumb}</td><td class="file">{source}</td>'
        f'<td>{label}</td><td class="num" data-value="{confidence}">{confidence}</td>'
        f"<td>{abstain}</td><td>{reasons}</td><td>{error}</td><td>{heat}</td></tr>"
    )


def _controls(labels: Sequence[str]) -> str:
    options = "".join(f'<option value="{_text(label)}">{_text(label)}</option>' for label in labels)
    return (
        '<div class="controls"><label>Status <select id="status"><option value="">all</option>'
        '<option value="answered">answered</option><option value="abstained">abstained</option>'
        '<option value="error">errors</option></select></label>'
        f'<label>Answer <select id="answer"><option value="">all</option>{options}</select></label>'
        '<label>Search <input id="search" type="search" placeholder="file, answer, reason"></label>'
        '<span id="shown"></span></div>'
    )


HEADERS = (
    ("#", "number"),
    ("Scan", ""),
    ("File", "text"),
    ("Answer", "text"),
    ("Confidence", "number"),
    ("Abstained", "text"),
    ("Reasons", "text"),
    ("Error", "text"),
    ("Heatmap", ""),
)


def render_report(
    rows: Sequence[ReportRow], labels: Sequence[str], identity: ModelIdentity, title: str = "tumorscan report"
) -> str:
    """The whole HTML document."""
    headers = "".join(
        f'<th data-type="{kind}">{name}</th>' if kind else f"<th>{name}</th>" for name, kind in HEADERS
    )
    body = "\n".join(_row(index, row) for index, row in enumerate(rows))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{_text(title)}</title><style>{STYLE}</style></head><body>\n<h1>{_text(title)}</h1>\n"
        f"{_summary(rows, identity)}\n{_controls(labels)}\n"
        f'<table id="results"><thead><tr>{headers}</tr></thead><tbody>\n{body}\n</tbody></table>\n'
        '<dialog id="viewer"><figure><img alt=""><figcaption></figcaption></figure></dialog>\n'
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def write_report(
    path: Path,
    done: Sequence[tuple[Path, Result, Any]],
    labels: Sequence[str],
    identity: ModelIdentity,
    heatmaps: Mapping[int, bytes] | None = None,
) -> None:
    """Write the report of a run's outcomes to `path` (atomically)."""
    document = render_report(report_rows(done, heatmaps), labels, identity)
    with atomic_text_writer(path) as sink:
        sink.write(document)
