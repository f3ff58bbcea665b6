#!/usr/bin/env python3
"""Run tumor-infer on emulated Raspberry Pi CPUs and check its predictions against x86.

The check lives in `tumorscan.export.aarch64` (`cli` is its command line); `--help` says what it needs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tumorscan.export.aarch64.cli import main

if __name__ == "__main__":
    sys.exit(main(Path(__file__).resolve().parent.parent))
