"""The docs stay true: the configuration page is generated from Settings, links resolve, the README is short,
and no code comment points at an issue number."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from sightfleet import config_docs

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
LINK_RE = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
ISSUE_RE = re.compile(r"\bissues? ?#?\d+", re.IGNORECASE)
CODE_SUFFIXES = (".py", ".sh", ".js", ".css", ".html", ".toml", ".service")


def test_configuration_page_is_generated_from_settings():
    assert config_docs.undocumented() == [], "describe these in sightfleet/config_docs.py"
    assert (DOCS / "configuration.md").read_text() == config_docs.render(), (
        "docs/configuration.md is out of date: python -m sightfleet.config_docs > docs/configuration.md")


def test_every_setting_appears_on_the_configuration_page():
    page = (DOCS / "configuration.md").read_text()
    assert "`SIGHTFLEET_MAX_INSTANCES`" in page and "`AWS_ENDPOINT_URL`" in page and "`PORT`" in page


def test_the_readme_is_a_front_door():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: move detail into docs/"


def test_every_relative_link_in_the_readme_and_docs_resolves():
    broken = []
    for page in [REPO / "README.md", *sorted(DOCS.glob("*.md"))]:
        for target in LINK_RE.findall(page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert broken == []


def test_no_code_comment_names_an_issue_number():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    found = [f"{name}:{number}: {line.strip()}"
             for name in tracked.splitlines() if name.endswith(CODE_SUFFIXES) and (REPO / name).exists()
             for number, line in enumerate((REPO / name).read_text(errors="replace").splitlines(), 1)
             if ISSUE_RE.search(line)]
    assert found == [], "say what and why instead of pointing at an issue"


def test_every_file_and_function_the_architecture_names_exists():
    """Each `path.py:Class.method` hop in docs/architecture.md names a file that defines those names."""
    missing = []
    for path, dotted in re.findall(r"`([\w/]+\.py):([\w.]+)`", (DOCS / "architecture.md").read_text()):
        source = (REPO / path).read_text() if (REPO / path).exists() else ""
        missing += [f"{path}:{dotted}" for name in dotted.split(".")
                    if not re.search(rf"^\s*(def|class) {name}\b", source, re.MULTILINE)]
    assert missing == []
