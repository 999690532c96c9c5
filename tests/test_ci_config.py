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
    assert "USER 1000:1000" in text  # the non-root alsmri user
    assert "fetch_data --mirror" in text
    # dependencies come from pyproject.toml, in a layer before the code is copied
    assert text.index("pyproject.toml") < text.index("COPY bids_app /src/bids_app")


def test_hadolint_passes():
    import shutil
    import subprocess
    import sys
    from pathlib import Path as _Path

    exe = shutil.which("hadolint") or str(_Path(sys.executable).parent / "hadolint")
    proc = subprocess.run([exe, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
