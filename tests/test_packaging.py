"""Packaging and CI consistency: what is on disk is installed; CI runs the README command."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_is_listed():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts)
               for p in (REPO / "bids_app").rglob("__init__.py")}
    on_disk.add("bids_app.boilerplate")
    assert on_disk == listed


def test_boilerplate_is_importable_as_package_data():
    from importlib import resources

    names = {p.name for p in resources.files("bids_app.boilerplate").iterdir()}
    assert {"general.md", "dwi.md", "anat.md", "group.md", "references.bib"} <= names


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- test-command -->\n```bash\n(.+?)\n```\n<!-- /test-command -->",
                      readme, re.DOTALL)
    assert block, "README.md must hold the test command between test-command markers"
    assert "pytest" in block.group(1)
    ci = (REPO / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci and "README.md" in ci
