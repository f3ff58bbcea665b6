"""What every tumorscan command shares: turning typed errors into clean messages and exit codes."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ._version import __version__
from .errors import TumorscanError

F = TypeVar("F", bound=Callable[..., Any])


def version_option(command: F) -> F:
    """`--version` for every command: its name and the one version string of the package.

    A fresh option per command: click remembers the program name of the first call in its callback.
    """
    return click.version_option(__version__, message="%(prog)s (tumorscan) %(version)s")(command)


def default_of(function: Callable[..., Any], name: str) -> Any:
    """The default of a parameter of `function`, for an option that passes it on (one home per default).

    A dataclass's field defaults are class attributes: an option reads them directly (`TrainConfig.epochs`).
    """
    default = inspect.signature(function).parameters[name].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{function.__name__}: parameter {name!r} has no default")
    return default


def user_errors(command: F) -> F:
    """Report TumorscanError as a one-line message and exit status 1, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TumorscanError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]
