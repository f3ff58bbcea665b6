"""Silence what native libraries print on the process's stderr (file descriptor 2).

LiteRT's C++ code prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." when an
interpreter is made; Python's `sys.stderr` never sees it, so it is muted at the descriptor level.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()


@contextmanager
def native_stderr_muted() -> Iterator[None]:
    """Send file descriptor 2 to the null device for the duration of the block, then restore it.

    Threads that enter at once take turns; Python-level output is flushed before and kept.
    """
    with _LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, 2)
            finally:
                os.close(null)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
