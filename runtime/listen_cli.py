"""`tumor-listen`: run the DICOM node (`tumorscan.listen`) until interrupted."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from .classifier import Classifier
from .cli_support import user_errors, version_option
from .errors import TumorscanError
from .listen import Destination, Listener, ListenerConfig, ListenError
from .models import default_model_path


def _destination(
    _context: click.Context, _parameter: click.Parameter, value: str | None
) -> Destination | None:
    try:
        return None if value is None else Destination.parse(value)
    except ListenError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--spool", type=click.Path(file_okay=False, path_type=Path), required=True, help="Spool folder."
)
@click.option(
    "--trust", "trusted", multiple=True, required=True, help="A calling AE title to accept (repeat)."
)
@click.option(
    "--destination",
    callback=_destination,
    help="Where SRs are sent: AE@HOST:PORT (default: kept in the spool).",
)
@click.option("--ae-title", default=ListenerConfig.ae_title, show_default=True, help="This node's AE title.")
@click.option("--host", default=ListenerConfig.host, show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=ListenerConfig.port, show_default=True)
@click.option(
    "--quiet-seconds",
    type=click.FloatRange(min=0),
    default=ListenerConfig.quiet_seconds,
    show_default=True,
    help="A study is complete after this long without a new instance.",
)
@click.option(
    "--max-wait-seconds",
    type=click.FloatRange(min=0),
    default=ListenerConfig.max_wait_seconds,
    show_default=True,
    help="Take a study that never goes quiet this long after its first instance.",
)
@click.option(
    "--retry-seconds",
    type=click.FloatRange(min=0),
    default=ListenerConfig.retry_seconds,
    show_default=True,
    help="Wait between tries to send an SR.",
)
@click.option(
    "--maximum-associations",
    type=click.IntRange(min=1),
    default=ListenerConfig.maximum_associations,
    show_default=True,
)
@click.option(
    "--model", type=click.Path(dir_okay=False, path_type=Path), help="Model (default: the packaged one)."
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning"]), default="info", show_default=True
)
@version_option
@user_errors
def listen_command(model: Path | None, log_level: str, trusted: tuple[str, ...], **options: Any) -> None:
    """Receive DICOM studies (C-STORE) from the trusted AE titles, classify each once it is quiet, and
    send its Structured Report to the destination. Stop with Ctrl-C or SIGTERM; a crash loses nothing.
    """
    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for name in ("pynetdicom", "highdicom"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        classifier = Classifier.load(model or default_model_path())
    except TumorscanError as exc:
        raise click.BadParameter(str(exc), param_hint="'--model'") from exc
    listener = Listener(ListenerConfig(trusted=trusted, **options), classifier)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    listener.start()
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        listener.stop()
