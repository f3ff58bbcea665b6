"""One version string: the package, its installed metadata and every command's `--version` agree."""

from __future__ import annotations

from importlib import metadata

import pytest
from click.testing import CliRunner

import tumorscan

COMMANDS = sorted(
    entry_point
    for entry_point in metadata.distribution("tumorscan").entry_points
    if entry_point.group == "console_scripts"
)


def test_installed_metadata_carries_the_package_version() -> None:
    assert metadata.version("tumorscan") == tumorscan.__version__


def test_every_command_is_covered() -> None:
    assert {entry_point.name for entry_point in COMMANDS} == {
        "tumor-train",
        "tumor-evaluate",
        "tumor-audit",
        "tumor-export",
        "tumor-parity",
        "tumor-infer",
        "tumor-bench",
        "tumor-calibrate",
        "tumor-trust",
        "tumor-adapt",
        "tumor-seal",
        "tumor-listen",
    }


@pytest.mark.parametrize("entry_point", COMMANDS, ids=lambda entry_point: entry_point.name)
def test_every_command_prints_the_version(entry_point: metadata.EntryPoint) -> None:
    result = CliRunner().invoke(entry_point.load(), ["--version"], prog_name=entry_point.name)
    assert result.exit_code == 0, result.output
    assert result.output == f"{entry_point.name} (tumorscan) {tumorscan.__version__}\n"
