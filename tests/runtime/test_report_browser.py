"""The `--report` page in a real browser: Debian's Chromium, headless, driven by Playwright.

Skipped only when /usr/bin/chromium is absent (`.ci/run` installs it: `apt-get install chromium`).
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tumorscan.cli import infer_command

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium: install Debian's package (apt-get install chromium)"
)


def _infer(*args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(infer_command, [*args, "--jsonl"], catch_exceptions=False)
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture()
def report(tflite_fp32: Path, sample_test: Path, tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The report of the sample scans plus a broken one, with heatmaps; half the answers abstain."""
    scans = tmp_path / "scans"
    shutil.copytree(sample_test, scans)
    (scans / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    confidences = [r["confidence"] for r in _infer(str(scans), "--model", str(tflite_fp32)) if "label" in r]
    threshold = f"{statistics.median(confidences):.6f}"
    path = tmp_path / "report.html"
    options = [
        "--model",
        str(tflite_fp32),
        "--abstain-threshold",
        threshold,
        "--explain",
        str(tmp_path / "h"),
    ]
    records = _infer(str(scans), *options, "--report", str(path))
    return path, records


def test_report_sorts_filters_and_shows_heatmaps(
    report: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    path, records = report
    abstained = sum(1 for record in records if record.get("abstain"))
    assert 0 < abstained < len(records) - 1
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(path.as_uri())
        assert page.locator("#results tbody tr").count() == len(records) == 9
        assert page.locator("#shown").inner_text() == "9 of 9 shown"

        confidence = page.locator("#results th", has_text="Confidence")
        confidence.click()
        shown = page.locator("#results tbody tr td:nth-child(5)").all_inner_texts()
        values = [float(text) for text in shown if text]
        assert shown[0] == "" and values == sorted(values)  # the error (no confidence) first
        confidence.click()
        shown = page.locator("#results tbody tr td:nth-child(5)").all_inner_texts()
        assert [float(text) for text in shown if text] == sorted(values, reverse=True)
        assert confidence.get_attribute("aria-sort") == "descending"

        page.select_option("#status", "abstained")
        visible = page.locator("#results tbody tr:not([hidden])")
        assert visible.count() == abstained
        assert set(visible.evaluate_all("rows => rows.map(r => r.dataset.status)")) == {"abstained"}
        assert page.locator("#shown").inner_text() == f"{abstained} of 9 shown"

        index = int(visible.first.get_attribute("data-index") or "")
        visible.first.locator("button", has_text="heatmap").click()
        dialog = page.locator("#viewer")
        assert dialog.evaluate("d => d.open")
        size = dialog.locator("img").evaluate("i => [i.complete, i.naturalWidth, i.naturalHeight]")
        assert size == [True, 64, 32]  # the scan beside its heatmap, at the model's 32 x 32
        dialog.locator("img").screenshot(path=str(tmp_path / "heatmap.png"))
        page.screenshot(path=str(tmp_path / "report.png"))
        browser.close()
    with Image.open(tmp_path / "report.png") as image:
        assert image.size == (1280, 900)
        assert np.asarray(image.convert("L"), dtype=np.float32).std() > 10  # a page with content
    (written,) = (tmp_path / "h").glob(f"{index:04d}_*.png")  # the heatmap --explain wrote for that row
    with Image.open(tmp_path / "heatmap.png") as shown, Image.open(written) as expected:
        seen = np.asarray(shown.convert("RGB").resize((64, 32), Image.Resampling.BOX), dtype=np.float32)
        difference = np.abs(seen - np.asarray(expected.convert("RGB"), dtype=np.float32))
    assert difference.mean() < 8  # the row's own heatmap is on screen (JPEG in the page: not exact)
