"""What the emulated Raspberry Pi check prints: the set-up, a table per model, the verdict."""

from __future__ import annotations

from pathlib import Path

from tumorscan.export.aarch64.guest import EmulatedCpu
from tumorscan.export.aarch64.report import (
    TABLE_HEADER,
    alignment_line,
    loadable_on_pi5,
    model_heading,
    reference_name,
    results_line,
    setup_lines,
    summary_lines,
    table_rows,
)
from tumorscan.records import Comparison

REPO = Path(__file__).resolve().parents[3]
PI4 = EmulatedCpu("cortex-a72", "3.11.2", "0xd08", False)
PI5 = EmulatedCpu("cortex-a76", "3.11.2", "0xd0b", True)
PINS = ["ai-edge-litert==2.3.0", "click==8.5.1", "numpy==2.4.6", "onnxruntime==1.32.0", "pillow==13.0.0"]


def test_the_report_reads_as_the_committed_run() -> None:
    """results/aarch64/check-default.txt from that run's numbers (its first line went to stderr)."""
    committed = (REPO / "results" / "aarch64" / "check-default.txt").read_text(encoding="utf-8")
    reference = reference_name(None, Path(".venv/bin/python"))
    scans = ["tests/data/mri/train", "tests/data/mri/test"]
    lines = [
        *setup_lines("10.0.13", "3.11.2", "tumorscan-0.1.0-py3-none-any.whl", PINS, reference, scans),
        alignment_line(68, 65536),
        *model_heading("default.tflite", True, 1e-4, "float output"),
        *table_rows(PI4, Comparison(32, 32, 13, 4.5e-5, []), 21.2),
        *table_rows(PI5, Comparison(32, 32, 13, 4.5e-5, []), 19.8),
        results_line(Path(".cache/aarch64/results/default.tflite")),
        *summary_lines(6.3, 47.0, all_ok=True, aligned=True),
    ]
    assert "\n".join(lines) + "\n" == committed.split("\n", 1)[1]


def test_a_mismatch_is_marked_and_each_problem_listed_under_its_row() -> None:
    problems = [
        "b.png: top-1 meningioma_tumor, reference glioma_tumor",
        "c.dcm: missing from the emulated run",
    ]
    row, *listed = table_rows(PI4, Comparison(34, 32, 0, 0.0039, problems), 130.0)
    assert row.split() == [
        "cortex-a72",
        "Raspberry",
        "Pi",
        "4",
        "0xd08",
        "no",
        "34",
        "32/34",
        "0/34",
        "0.0039",
        "130s",
        "MISMATCH",
    ]
    assert row.index("MISMATCH") == TABLE_HEADER.index("result")
    assert listed == [f"      {problem}" for problem in problems]


def test_an_expectation_file_is_the_reference() -> None:
    assert reference_name(Path("expected.jsonl"), Path(".venv/bin/python")) == "expected.jsonl"
    assert model_heading("m-int8.tflite", False, 1 / 256, "one step of the uint8 output")[1] == (
        "model m-int8.tflite: tolerance 0.00390625 (one step of the uint8 output)"
    )


def test_libraries_aligned_below_16_kib_fail_the_pi5() -> None:
    assert loadable_on_pi5(16384) and not loadable_on_pi5(4096)
    assert alignment_line(70, 4096) == (
        "shared libraries: 70, LOAD segments aligned to 4 KiB or more: "
        "NOT loadable with the Pi 5 kernel's 16 KiB pages"
    )
    assert summary_lines(60, 300, all_ok=False, aligned=False) == [
        "",
        "set-up 60 s, total 300 s (emulation times say nothing of a Pi's speed); "
        "MISMATCH: predictions differ; a shared library cannot load with 16 KiB pages",
    ]
