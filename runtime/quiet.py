"""Quiet commands: TensorFlow, absl, oneDNN, CUDA and converter chatter stays hidden unless --verbose.

TensorFlow's native libraries write straight to file descriptor 2 (absl's "WARNING: All log messages
before absl::InitializeLog()...", oneDNN and CUDA start-up lines, "failed call to cuInit", converter
logs), some before any setting could reach them, so a quiet command points descriptor 2 at the null
device while it runs and gives Python's `sys.stderr` its own copy of the real stderr: the command's
messages, progress bars and errors still show. Environment settings are made before TensorFlow is
imported, and the Python loggers and warnings of these libraries are silenced. Nothing here imports
TensorFlow.

The runtime mutes descriptor 2 only around interpreter creation (`native_stderr_muted`), where LiteRT's
C++ code prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.".
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "GLOG_minloglevel": "3"}
"""Settings read by TensorFlow's C++ logging, gRPC and glog when they load (set unless already set)."""

NOISY_LOGGERS = ("tensorflow", "absl", "keras", "tf2onnx", "onnx", "onnxruntime", "h5py")
NOISY_MODULES = r"(tensorflow|keras|tf_keras|tf2onnx|onnx|onnxruntime|absl|google|h5py|ml_dtypes)(\.|$)"


_LOCK = threading.Lock()


@contextmanager
def _descriptor_2_to_null() -> Iterator[int]:
    """Point file descriptor 2 at the null device; yields a duplicate of the real one; restores it after."""
    saved = os.dup(2)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
        finally:
            os.close(null)
        yield saved
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def native_stderr_muted() -> Iterator[None]:
    """Mute file descriptor 2 for a short block; threads that enter at once take turns."""
    with _LOCK:
        sys.stderr.flush()
        with _descriptor_2_to_null():
            yield


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Send what is written to file descriptor 2 to the null device; keep `sys.stderr` on the real one."""
    try:
        python_stderr_is_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # replaced by a test runner or a GUI
        python_stderr_is_fd2 = False
    sys.stderr.flush()
    with _descriptor_2_to_null() as saved:
        previous = sys.stderr
        own = None
        if python_stderr_is_fd2:
            own = os.fdopen(
                os.dup(saved), "w", buffering=1, encoding=previous.encoding, errors="backslashreplace"
            )
            sys.stderr = own
        try:
            yield
        finally:
            if own is not None:
                own.flush()
                sys.stderr = previous
                own.close()


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Environment, loggers and warnings of TensorFlow and the converters set to say nothing."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    disabled = logging.root.manager.disable
    logging.disable(logging.ERROR)  # also what a converter logs after resetting its own logger's level
    try:
        with warnings.catch_warnings(), quiet_native_stderr():
            warnings.filterwarnings("ignore", module=NOISY_MODULES)
            yield
    finally:
        logging.disable(disabled)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def quiet_unless_verbose(command: F) -> F:
    """Add --verbose to a click command; without it, the command runs inside `quiet_libraries`."""

    @functools.wraps(command)
    def wrapper(*args: Any, verbose: bool, **kwargs: Any) -> Any:
        if verbose:
            return command(*args, **kwargs)
        with quiet_libraries():
            return command(*args, **kwargs)

    option = click.option(
        "--verbose", is_flag=True, help="Show TensorFlow's and the converters' own log lines and warnings."
    )
    return option(wrapper)  # type: ignore[return-value]
