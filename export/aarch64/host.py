"""The x86 host: what it must have, the Debian mirror it names, and the commands the check runs on it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
APT = Path("/etc/apt")
HOST_TOOLS = ("apt-get", "dpkg-deb", "tar")
LOG_TAIL = 15
"""Lines of the log shown when a command fails."""


class CheckError(Exception):
    """The check could not run (environment, build or tool failure)."""


class Log:
    """Progress to stderr; command output to a log file, whose end is shown when a command fails."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")
        self.path = path

    def step(self, text: str) -> None:
        print(f"» {text}", file=sys.stderr, flush=True)

    def run(self, command: list[str], **kwargs: Any) -> None:
        """Run `command` with its output appended to the log.

        Raises:
            CheckError: it failed; the message holds the end of the log.
        """
        with self.path.open("a", encoding="utf-8") as log:
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, **kwargs).returncode
        if returncode != 0:
            tail = "\n".join(self.path.read_text(encoding="utf-8").splitlines()[-LOG_TAIL:])
            raise CheckError(
                f"{Path(command[0]).name} failed (exit {returncode}); end of {self.path}:\n{tail}"
            )


def _one_line_sources(apt: Path) -> list[tuple[str, list[str]]]:
    """(URI, [suite]) of each `deb` line of sources.list and sources.list.d/*.list."""
    found = []
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    found.append((words[1], [words[2]]))
    return found


def _deb822_sources(apt: Path) -> list[tuple[str, list[str]]]:
    """(URI, suites) of each enabled `deb` stanza of sources.list.d/*.sources."""
    found = []
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
            lines = (line.partition(":") for line in stanza.splitlines() if not line.startswith("#"))
            fields = {key.strip().lower(): value.strip() for key, _, value in lines}
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                suites = fields.get("suites", "").split()
                found += [(uri, suites) for uri in fields.get("uris", "").split()]
    return found


def system_mirror(apt: Path = APT) -> str | None:
    """The first Debian mirror in the sources under `apt` with a release suite (not -security, -updates)."""
    for uri, suites in _one_line_sources(apt) + _deb822_sources(apt):
        if uri.rstrip("/").endswith("/debian") and any("-" not in suite for suite in suites):
            return uri.rstrip("/")
    return None


def check_host(x86_python: Path, mirror: str | None, keyring: Path = KEYRING, apt: Path = APT) -> str:
    """Fail early, before any download, when the host lacks something; return the Debian mirror.

    Raises:
        CheckError: what is missing, and what to do.
    """
    if not x86_python.exists():
        raise CheckError(f"{x86_python}: no such Python; pass --x86-python")
    for tool in HOST_TOOLS:
        if shutil.which(tool) is None:
            raise CheckError(f"{tool} not found: this check needs a Debian-based host")
    if not keyring.is_file():
        raise CheckError(f"{keyring} not found; apt-get install debian-archive-keyring")
    found = mirror or system_mirror(apt)
    if found is None:
        raise CheckError(f"no Debian mirror in {apt / 'sources.list'}(.d); pass --mirror URL")
    return found


def python_json(python: Path, code: str, *arguments: str) -> Any:
    """What `code`, run by `python` with `arguments`, prints as JSON.

    Raises:
        CheckError: it failed; the message holds its last line of stderr.
    """
    result = subprocess.run([str(python), "-c", code, *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        raise CheckError(f"{python}: {(result.stderr.strip().splitlines() or ['failed'])[-1]}")
    return json.loads(result.stdout)
