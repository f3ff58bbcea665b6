"""LiteRT's native "XNNPACK delegate" notice stays off stderr; everything else still gets through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

INFER = "import sys; from tumorscan.cli import infer_command; sys.exit(infer_command())"
NOTICE = "XNNPACK delegate"


def test_tumor_infer_prints_no_delegate_notice(tflite_int8: Path, sample_test: Path) -> None:
    command = [sys.executable, "-c", INFER, "--model", str(tflite_int8), "--jsonl", str(sample_test)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert NOTICE not in done.stderr
    assert "8 scans: 8 predicted, 0 failed" in done.stderr  # the summary still reaches stderr


def test_native_stderr_is_muted_only_inside_the_block() -> None:
    script = (
        "import os; from tumorscan.quiet import native_stderr_muted\n"
        "os.write(2, b'before\\n')\n"
        "with native_stderr_muted():\n    os.write(2, b'inside\\n')\n"
        "os.write(2, b'after\\n')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stderr == "before\nafter\n"
