"""MkDocs hooks: the repository's results, the package's import layout for the API reference, and every
command's options table read from the command itself."""

from __future__ import annotations

import html
import logging
import re
import shutil
from importlib import metadata
from pathlib import Path

import click
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
API_LAYOUT = ROOT / ".cache" / "docs-api"
"""The package as it is imported (runtime/ as tumorscan, train/ as tumorscan.train, ...), for griffe."""
SUBPACKAGES = ("train", "export", "calibration")
OPTIONS_MARKER = re.compile(r"^<!-- options: (?P<command>[\w-]+) -->$", re.MULTILINE)
MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]|])")

log = logging.getLogger("mkdocs.hooks.tumorscan")


def on_startup(command: str, dirty: bool) -> None:
    """Lays out runtime/, train/, export/ and calibration/ as the one package griffe reads (before the
    plugins read their configuration)."""
    shutil.rmtree(API_LAYOUT, ignore_errors=True)
    package = API_LAYOUT / "tumorscan"
    package.mkdir(parents=True)
    for entry in sorted((ROOT / "runtime").iterdir()):
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name in SUBPACKAGES:
        (package / name).symlink_to(ROOT / name)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Serves results/ (figures, reports, logs) at results/ in the site, from its one copy in git."""
    for path in sorted(RESULTS.rglob("*")):
        if path.is_file():
            uri = path.relative_to(ROOT).as_posix()
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Replaces each `<!-- options: COMMAND -->` line with the table of that command's options."""
    return OPTIONS_MARKER.sub(lambda match: _options_table(match["command"], page), markdown)


def _options_table(name: str, page: Page) -> str:
    scripts = metadata.distribution("tumorscan").entry_points.select(group="console_scripts", name=name)
    if not scripts:
        log.warning("%s: tumorscan installs no command '%s'", page.file.src_uri, name)
        return ""
    command: click.Command = next(iter(scripts)).load()
    context = click.Context(command, info_name=name)
    rows = ["| option | what it does |", "|---|---|"]
    for param in command.get_params(context):
        record = param.get_help_record(context)
        if isinstance(param, click.Option) and record is not None and "--help" not in record[0]:
            rows.append(f"| `{record[0]}` | {_escape(record[1])} |")
    usage = " ".join([name, *command.collect_usage_pieces(context)])
    return f"`{usage}`\n\n" + "\n".join(rows)


def _escape(text: str) -> str:
    return MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(" ".join(text.split()), quote=False))
