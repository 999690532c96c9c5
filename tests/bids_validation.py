"""Run the BIDS validator (``bids-validator-deno``, offline) on a directory from the tests.

The validator carries its own copy of the BIDS schema, so no network is needed; one run on a
one-participant derivative takes about 0.5 s.  Install it with the ``test`` extra.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

EXE_NAME = "bids-validator-deno"


def validator_exe() -> str:
    """The validator next to the running interpreter (the venv), else the one on ``PATH``."""
    local = Path(sys.executable).parent / EXE_NAME
    if local.is_file():
        return str(local)
    found = shutil.which(EXE_NAME)
    if found is None:
        raise FileNotFoundError(f"{EXE_NAME} not found: pip install -e '.[test]'")
    return found


def validate(dataset: str | Path, *, timeout: float = 600) -> list[dict[str, Any]]:
    """Every issue the validator reports for ``dataset`` (dicts with ``severity``, ``code``,
    ``location``, ``subCode`` ...)."""
    dataset = Path(dataset)
    if not (dataset / "dataset_description.json").is_file():
        raise FileNotFoundError(f"{dataset}: no dataset_description.json, not a BIDS dataset")
    proc = subprocess.run([validator_exe(), str(dataset), "--format", "json", "--no-color"],
                          check=False, capture_output=True, text=True, timeout=timeout)
    # exit 0: no error, 16: errors found; anything else is the validator failing to run
    if proc.returncode not in (0, 16):
        raise RuntimeError(f"{EXE_NAME} {dataset} failed (exit {proc.returncode}): "
                           f"{proc.stderr[-2000:]}")
    try:
        report = json.loads(proc.stdout)
    except ValueError as exc:
        raise RuntimeError(f"{EXE_NAME} {dataset}: output is not JSON: "
                           f"{proc.stdout[:500]!r} {proc.stderr[-1000:]!r}") from exc
    return list(report["issues"]["issues"])


def errors(dataset: str | Path) -> list[dict[str, Any]]:
    """The issues of severity ``error`` for ``dataset``."""
    return [issue for issue in validate(dataset) if issue.get("severity") == "error"]


def describe(issues: list[dict[str, Any]]) -> str:
    """One line per issue, for assertion messages: ``CODE location (subCode)``."""
    lines = []
    for issue in issues:
        sub = f" ({issue['subCode']})" if issue.get("subCode") else ""
        lines.append(f"{issue.get('code')} {issue.get('location', '')}{sub}")
    return "\n".join(lines)


def assert_valid(dataset: str | Path) -> None:
    """Fail listing every validator error of ``dataset`` (warnings are allowed)."""
    found = errors(dataset)
    assert not found, f"BIDS validator: {len(found)} error(s) in {dataset}\n{describe(found)}"
