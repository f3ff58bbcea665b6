"""Figures for reports, drawn with matplotlib's object API: no pyplot, no process-wide backend change."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from tumorscan.files import atomic_write_bytes


def new_figure(**options: Any) -> Any:
    """A matplotlib Figure not attached to any GUI backend (options as for `Figure`)."""
    from matplotlib.figure import Figure

    return Figure(**options)


def png_bytes(figure: Any, dpi: int = 120) -> bytes:
    """The figure rendered as PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def save_png(figure: Any, path: Path, dpi: int = 120) -> None:
    """Write the figure as a PNG file, atomically."""
    atomic_write_bytes(path, png_bytes(figure, dpi))
