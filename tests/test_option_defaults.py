"""Each default has one home: a command's option defaults are those of the dataclass or function it feeds."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import click
import pytest

from tumorscan.cli import infer_command
from tumorscan.cli_support import default_of
from tumorscan.export.bench.cli import bench_command
from tumorscan.export.bench.run import BenchOptions
from tumorscan.export.cli import export_command, parity_command
from tumorscan.export.exporter import ExportOptions
from tumorscan.export.parity import run_parity
from tumorscan.export.seal import seal_command
from tumorscan.export.site_cli import adapt_command
from tumorscan.listen import ListenerConfig
from tumorscan.listen_cli import listen_command
from tumorscan.sections import ParityLimits
from tumorscan.train.calibrate import calibrate_keras
from tumorscan.train.calibrate_cli import calibrate_command
from tumorscan.train.cli import evaluate_command, train_command
from tumorscan.train.evaluate import evaluate_model
from tumorscan.train.run_config import TrainConfig
from tumorscan.train.site import AdaptOptions
from tumorscan.train.site_adapt import AdaptRecipe

HOMES: list[tuple[click.Command, tuple[Callable[..., Any], ...]]] = [
    (export_command, (ExportOptions, ParityLimits)),
    (parity_command, (ParityLimits, run_parity)),
    (train_command, (TrainConfig,)),
    (evaluate_command, (evaluate_model,)),
    (calibrate_command, (calibrate_keras,)),
    (adapt_command, (AdaptOptions, AdaptRecipe)),
    (bench_command, (BenchOptions,)),
    (infer_command, ()),
    (seal_command, ()),
    (listen_command, (ListenerConfig,)),
]
AS_OPTION: dict[str, Callable[[Any], Any]] = {
    "size": lambda size: size[0],  # --size N: an N x N input
    "formats": lambda formats: ",".join(formats),  # --formats a,b
}
OPTION_ONLY = {("infer", "top_k"), ("infer", "trusted_keys"), ("adapt", "export"), ("listen", "log_level")}
"""Defaults that live in the option alone (nothing else takes the value)."""


def _home_default(homes: tuple[Callable[..., Any], ...], name: str) -> tuple[bool, Any]:
    for home in homes:
        parameter = inspect.signature(home).parameters.get(name)
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            return True, parameter.default
    return False, None


@pytest.mark.parametrize(("command", "homes"), HOMES, ids=[str(command.name) for command, _ in HOMES])
def test_every_option_default_is_its_homes_default(
    command: click.Command, homes: tuple[Callable[..., Any], ...]
) -> None:
    defaults = command.make_context(str(command.name), [], resilient_parsing=True).params
    checked = []
    for name, given in defaults.items():
        if given is None or given is False:  # no default, or an unset flag
            continue
        found, default = _home_default(homes, name)
        assert found or (command.name, name) in OPTION_ONLY, f"{command.name} {name}: {given!r} has no home"
        if found:
            assert given == AS_OPTION.get(name, lambda value: value)(default), name
            checked.append(name)
    assert checked or not homes


def test_the_shared_defaults_have_the_values_the_readme_gives() -> None:
    assert (ParityLimits.min_agreement, ParityLimits.max_drop, ParityLimits.max_prob_diff) == (
        0.99,
        1.0,
        None,
    )
    assert (ExportOptions.calibration_count, ExportOptions.seed, ExportOptions.calibration_method) == (
        300,
        0,
        "minmax",
    )
    assert (TrainConfig.epochs, TrainConfig.size, TrainConfig.batch_size, TrainConfig.lr) == (
        30,
        (224, 224),
        32,
        1e-3,
    )


def test_default_of_reads_a_parameters_default() -> None:
    assert default_of(evaluate_model, "batch_size") == 32
    with pytest.raises(TypeError, match="'data' has no default"):
        default_of(evaluate_model, "data")
