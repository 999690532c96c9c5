"""CircleCI, .ci/run and the Dockerfile stay in step."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _commands(job: dict) -> list[str]:
    return [step["run"]["command"] for step in job["steps"]
            if isinstance(step, dict) and "run" in step]


def test_circleci_runs_the_same_scripts_as_ci():
    config = yaml.safe_load((REPO / ".circleci" / "config.yml").read_text())
    jobs = config["jobs"]
    assert any(".ci/run" in c for c in _commands(jobs["test"]))
    assert any(c.strip() == "bash scripts/docker-test.sh"
               for c in _commands(jobs["build_and_push"]))
    ci = (REPO / ".ci" / "run").read_text()
    assert "bash scripts/docker-test.sh" in ci


def test_dockerfile_contract():
    text = (REPO / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    for var in ("TEMPLATEFLOW_HOME", "ALSMRI_DATA", "HOME", "MPLCONFIGDIR"):
        assert f"{var}=" in text
    assert 'ENTRYPOINT ["alsmri"]' in text
    assert "USER alsmri" in text
    assert "fetch_data --mirror" in text
    # dependencies come from pyproject.toml, in a layer before the code is copied
    assert text.index("pyproject.toml") < text.index("COPY bids_app /src/bids_app")
