"""Open a `tumor-infer --report` page in Debian's headless Chromium: its size, how long it takes to open
and to sort, and a screenshot.

    python scripts/measure_report.py report.html --screenshot results/report.png

Needs /usr/bin/chromium (apt-get install chromium) and Playwright for Python (in the `dev` extra).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def measure(report: Path, repeats: int, screenshot: Path | None) -> None:
    """Print the file's size and the median seconds to open it (load event) and to sort by confidence."""
    from playwright.sync_api import sync_playwright

    opened, sorted_in = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            started = time.perf_counter()
            page.goto(report.resolve().as_uri(), wait_until="load")
            opened.append(time.perf_counter() - started)
            started = time.perf_counter()
            page.locator("#results th", has_text="Confidence").click()
            page.locator("#results th[aria-sort]").wait_for()
            sorted_in.append(time.perf_counter() - started)
            rows = page.locator("#results tbody tr").count()
            if screenshot is not None:
                page.screenshot(path=str(screenshot))
            page.close()
        browser.close()
    size = report.stat().st_size
    print(f"{report}: {rows} rows, {size / 1e6:.2f} MB")
    median = statistics.median(opened)
    print(f"open (load event): median {median:.2f} s of {repeats}, max {max(opened):.2f} s")
    print(f"sort by confidence: median {statistics.median(sorted_in):.3f} s")


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("report", type=Path, help="the HTML file written by tumor-infer --report")
    parser.add_argument("--repeats", type=int, default=5, help="times to open it (default: 5)")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the sorted page here")
    arguments = parser.parse_args()
    measure(arguments.report, arguments.repeats, arguments.screenshot)


if __name__ == "__main__":
    main()
