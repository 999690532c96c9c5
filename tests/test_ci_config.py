"""CircleCI, .ci/run, scripts/docker-test.sh and the Dockerfile stay in step."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def circleci() -> dict:
    return yaml.safe_load((REPO / ".circleci" / "config.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def _steps(config: dict, job: str) -> list:
    """The job's steps with reusable ``commands:`` expanded in place."""
    out = []
    for step in config["jobs"][job]["steps"]:
        name = step if isinstance(step, str) else next(iter(step))
        if name in config.get("commands", {}):
            out.extend(config["commands"][name]["steps"])
        else:
            out.append(step)
    return out


def _commands(config: dict, job: str) -> list[str]:
    return [step["run"]["command"] for step in _steps(config, job)
            if isinstance(step, dict) and "run" in step]


def test_circleci_runs_the_same_scripts_as_ci(circleci):
    jobs = circleci["jobs"]
    assert set(jobs) == {"test", "build_and_push"}
    assert any(c.strip() == "bash .ci/run" for c in _commands(circleci, "test"))
    assert any(c.strip() == "bash scripts/docker-test.sh"
               for c in _commands(circleci, "build_and_push"))
    ci = (REPO / ".ci" / "run").read_text()
    assert "bash scripts/docker-test.sh" in ci


def test_ci_runs_static_checks_after_the_tests():
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^set -euo pipefail$", ci, re.MULTILINE)  # a failing check fails CI
    steps = [line.strip() for line in ci.splitlines()
             if line.strip() and not line.lstrip().startswith(("#", "echo"))]
    # the venv the README's test command created, after the tests passed, before the container
    ruff = steps.index(".venv/bin/ruff check .")
    lint = steps.index(".venv/bin/lint-imports --no-cache")
    tests = next(i for i, s in enumerate(steps) if s.startswith('[ "$rc" -eq 0 ]'))
    docker = next(i for i, s in enumerate(steps) if "scripts/docker-test.sh" in s)
    assert tests < ruff < docker and tests < lint < docker
    proc = subprocess.run(["bash", "-n", str(REPO / ".ci" / "run")], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_test_extra_has_the_ci_tools():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    test = {re.split(r"[<>=!~ ]", r, maxsplit=1)[0]: r
            for r in pyproject["project"]["optional-dependencies"]["test"]}
    for tool in ("ruff", "import-linter", "bids-validator-deno"):
        assert tool in test, tool
        assert re.fullmatch(rf"{tool}>=[0-9.]+", test[tool]), test[tool]  # lower bound only
    linter = pyproject["tool"]["importlinter"]
    assert linter["root_package"] == "bids_app"
    types = {c["type"] for c in linter["contracts"]}
    assert {"layers", "forbidden", "acyclic_siblings"} <= types


def test_circleci_uses_the_native_docker_engine(circleci):
    # .ci/run calls scripts/docker-test.sh, which otherwise wraps docker in the private engine
    # ../shared/tools/docker-ci.sh (absent on CircleCI).
    for name, job in circleci["jobs"].items():
        assert job["environment"]["DOCKER_CI"] == "native", name
        assert "machine" in job and job["machine"]["image"].startswith("ubuntu-"), name
    assert "native" in (REPO / "scripts" / "docker-test.sh").read_text()
    # the public image build exercises the Dockerfile's online path
    assert circleci["jobs"]["build_and_push"]["environment"]["ALSMRI_DOCKER_DATA"] == "online"


def test_circleci_python_is_311(circleci):
    commands = "\n".join(_commands(circleci, "test"))
    assert "pyenv global" in commands and "3\\.11" in commands
    assert "sys.version_info[:2] == (3, 11)" in commands
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == ">=3.11"  # the code imports tomllib


def test_circleci_shared_data_has_a_source(circleci):
    # no restore_cache without a save_cache producing its key
    saved = {step["save_cache"]["key"] for job in circleci["jobs"] for step in
             _steps(circleci, job) if isinstance(step, dict) and "save_cache" in step}
    for job in circleci["jobs"]:
        for step in _steps(circleci, job):
            if isinstance(step, dict) and "restore_cache" in step:
                keys = step["restore_cache"].get("keys") or [step["restore_cache"]["key"]]
                assert set(keys) & saved, f"{job}: restore_cache {keys} is never saved"
        shared = [c for c in _commands(circleci, job) if "ALSMRI_SHARED_URL" in c]
        assert shared and "exit 66" in shared[0] and "sha256sum" in shared[0], job
    assert circleci["jobs"]["test"]["environment"]["ALSMRI_SHARED"]


def test_push_happens_only_on_tags(circleci):
    pushing = [job for job in circleci["jobs"]
               if any("docker push" in c for c in _commands(circleci, job))]
    assert pushing == ["build_and_push"]
    push = next(c for c in _commands(circleci, "build_and_push") if "docker push" in c)
    assert 'CIRCLE_TAG:-' in push and push.index("CIRCLE_TAG:-") < push.index("docker login")
    for workflow in circleci["workflows"].values():
        if not isinstance(workflow, dict):
            continue
        for entry in workflow["jobs"]:
            name, spec = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
            if name in pushing:
                filters = spec["filters"]
                assert filters["branches"]["ignore"] == "/.*/"
                assert filters["tags"]["only"].startswith("/^v")
                assert "test" in spec["requires"]


def test_dockerfile_contract(dockerfile):
    text = dockerfile
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    for var in ("HOME", "MPLCONFIGDIR", "XDG_CACHE_HOME", "TEMPLATEFLOW_HOME", "ALSMRI_DATA"):
        assert re.search(rf"^\s*(ENV\s+)?{var}=\S+", text, re.MULTILINE), var
    for label in ("org.opencontainers.image.version", "org.opencontainers.image.source"):
        assert re.search(rf'LABEL[^\n]*(\\\n[^\n]*)*{re.escape(label)}="[^"]+"', text), label
    assert 'org.opencontainers.image.version="${VERSION}"' in text
    assert 'ENTRYPOINT ["alsmri"]' in text
    assert "USER 1000:1000" in text  # the non-root alsmri user
    # layer order: dependencies, then data, then the package code
    deps = text.index("COPY pyproject.toml /src/pyproject.toml")
    data = text.index("COPY docker-data/ /tmp/docker-data/")
    code = text.index("COPY bids_app /src/bids_app")
    assert deps < data < code


def test_dockerfile_data_step_offline_and_online(dockerfile):
    text = dockerfile
    # fetch-data runs before the package is installed, hence the module form
    install = text.index("pip install --no-cache-dir --no-deps /src")
    assert text.index("python -m bids_app.cli.fetch_data") < install
    assert "fetch_data --mirror /tmp/docker-data/sources" in text
    assert re.search(r"python -m bids_app\.cli\.fetch_data --dest /opt/alsmri/data;", text)
    assert "[ -d /tmp/docker-data/sources ]" in text
    assert "[ -d /tmp/docker-data/templateflow ]" in text
    assert "api.get('MNI152NLin6Asym', resolution=[1, 2]" in text
    # the TemplateFlow queries are the ones the app resolves (manifest: MNI152NLin6Asym files)
    manifest = yaml.safe_load((REPO / "bids_app" / "data" / "atlases.yaml").read_text())
    tf = next(r for r in manifest["resources"] if r["builder"] == "templateflow")
    assert tf["query"]["template"] == "MNI152NLin6Asym" and manifest["resolutions"] == [1, 2]
    for q in tf["query"]["files"]:
        assert f"('{q['suffix']}', {q['desc']!r})" in text
    # the build mirror and the download cache do not stay in the image
    from bids_app.atlases.layout import DOWNLOAD_DIR
    assert f"rm -rf /tmp/docker-data /opt/build /opt/alsmri/data/{DOWNLOAD_DIR}" in text


def test_docker_data_is_in_the_build_context():
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for pattern in ignored:
        assert pattern.rstrip("/*") not in ("docker-data", "docker-data/sources",
                                            "docker-data/templateflow", "docker-data/README.md")
    assert (REPO / "docker-data" / "README.md").is_file()  # COPY docker-data/ always works
    gitignore = (REPO / ".gitignore").read_text().splitlines()
    assert "docker-data/*" in gitignore and "!docker-data/README.md" in gitignore
    assert "docker-data/" not in gitignore  # would make the negation ineffective


def test_docker_test_keeps_the_tracked_readme():
    script = (REPO / "scripts" / "docker-test.sh").read_text()
    assert "rm -rf docker-data " not in script and "rm -rf docker-data\n" not in script
    assert "! -name README.md" in script
    assert 'DOCKER_CI="${DOCKER_CI:-$SHARED/tools/docker-ci.sh}"' in script
    assert "docker build --network host" in script
    proc = subprocess.run(["bash", "-n", str(REPO / "scripts" / "docker-test.sh")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_hadolint_passes():
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    proc = subprocess.run([exe, str(REPO / "Dockerfile")], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_data_step_has_every_module_fetch_data_imports(dockerfile, tmp_path):
    """The image's data layer runs ``python -m bids_app.cli.fetch_data`` from the files copied
    to /opt/build only: import it from exactly those files (not the installed package)."""
    import shutil
    import sys

    build = tmp_path / "opt" / "build"
    for line in dockerfile.splitlines():
        parts = line.split()
        if not (parts[:1] == ["COPY"] and parts[-1].startswith("/opt/build/")):
            continue
        dest = build / parts[-1][len("/opt/build/"):]
        for src in parts[1:-1]:
            path = REPO / src
            if path.is_dir():
                shutil.copytree(path, dest, dirs_exist_ok=True)
            else:
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, dest / path.name)
    # the editable install's finder (a class on sys.meta_path) would find the checkout
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in "
            "(f if isinstance(f, type) else type(f)).__module__.lower()]; "
            "import bids_app.cli.fetch_data as m; assert m.__file__.startswith(sys.argv[1])")
    proc = subprocess.run([sys.executable, "-c", code, str(build)], cwd=tmp_path,
                          env={"PYTHONPATH": str(build), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-1500:]
