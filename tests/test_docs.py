"""The documentation covers what the package has (every command, every error code), and the README stays a
front page whose links lead somewhere. `mkdocs build --strict` in .ci/run checks the site's own links."""

from __future__ import annotations

import ast
import re
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PACKAGES = ("runtime", "train", "export", "calibration")
SET_UP = ('python -m pip install -e ".[dev]"', "python -m pytest")
"""The README's two set-up commands, which .ci/run runs as written."""


def _error_codes() -> set[str]:
    codes = set()
    for path in sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                for statement in node.body:
                    if (
                        isinstance(statement, ast.Assign)
                        and [getattr(target, "id", None) for target in statement.targets] == ["code"]
                        and isinstance(statement.value, ast.Constant)
                    ):
                        codes.add(statement.value.value)
    return codes - {"error"}  # the base class's placeholder


def test_every_error_code_is_explained() -> None:
    page = (DOCS / "errors.md").read_text(encoding="utf-8")
    codes = _error_codes()
    assert {"bad_image", "no_such_file", "modified_model", "bad_site"} <= codes  # the scan finds them
    assert sorted(code for code in codes if f"`{code}`" not in page) == []


@pytest.mark.parametrize(
    "command",
    sorted(e.name for e in metadata.distribution("tumorscan").entry_points if e.group == "console_scripts"),
)
def test_every_command_has_its_options_table(command: str) -> None:
    pages = "".join(path.read_text(encoding="utf-8") for path in sorted(DOCS.glob("*.md")))
    assert f"<!-- options: {command} -->" in pages


def test_the_readme_is_a_front_page_with_the_set_up_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for command in SET_UP:
        assert f"\n{command}\n" in text
        assert f"\n{command}\n" in ci


def test_the_readme_links_lead_to_files_and_headings() -> None:
    for target in re.findall(r"\]\(([^)#]+\.md)(?:#([\w-]+))?\)", README.read_text(encoding="utf-8")):
        path, anchor = ROOT / target[0], target[1]
        assert path.is_file(), target[0]
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
            assert anchor in {_slug(heading) for heading in headings}, f"{target[0]}#{anchor}"


def _slug(heading: str) -> str:
    """The anchor MkDocs (Python-Markdown's toc) and GitHub give a heading without punctuation runs."""
    words = re.sub(r"[^\w\s-]", "", heading).strip().lower()
    return re.sub(r"[-\s]+", "-", words)
