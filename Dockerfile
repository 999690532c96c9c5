# alsmri BIDS App image: every template and atlas is built in at image build time, so the
# container runs with a read-only root file system and no network.
FROM python:3.11-slim

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="alsmri" \
      org.opencontainers.image.description="BIDS App: DTI tract metrics, GM volumes and clinical statistics for ALS" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/alsmri/alsmri" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp/home \
    MPLCONFIGDIR=/tmp/matplotlib \
    MPLBACKEND=Agg \
    XDG_CACHE_HOME=/tmp/cache \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    ALSMRI_DATA=/opt/alsmri/data \
    ALSMRI_CONTAINER_TAG="alsmri:${VERSION}" \
    ALSMRI_CONTAINER_TYPE=docker

# 1. Dependencies only (the slow layer): read from pyproject.toml so they cannot drift.
COPY pyproject.toml /src/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# 2. Templates and atlases. docker-data/ is the build context's optional offline mirror
#    (scripts/docker-test.sh fills it from ../shared/data; only docker-data/README.md is tracked):
#    - docker-data/sources present: `fetch-data --mirror` reads the atlas sources from it;
#      otherwise fetch-data downloads them from the upstream URLs in bids_app/data/atlases.yaml
#      (sha256-verified either way).
#    - docker-data/templateflow present: copied as the TemplateFlow home; otherwise the
#      MNI152NLin6Asym files alsmri uses (T1w and desc-brain mask, res-01 and res-02) are fetched
#      with templateflow.api.get, and the home is pruned to them (no empty S3 stubs).
#    fetch-data runs as `python -m bids_app.cli.fetch_data` from the data manager's files only:
#    the package (and so the `alsmri` console script) is installed in step 3, so that code changes
#    elsewhere do not rebuild this layer. /tmp/docker-data is removed in the same layer.
COPY docker-data/ /tmp/docker-data/
COPY bids_app/__init__.py bids_app/errors.py bids_app/settings.py /opt/build/bids_app/
COPY bids_app/cli/__init__.py bids_app/cli/fetch_data.py /opt/build/bids_app/cli/
COPY bids_app/atlases /opt/build/bids_app/atlases
# the model-bundle builder orients bundles with the profiles' own functions (one definition)
# the tissue-prior builder registers two templates with the seeded antspyx call
COPY bids_app/core/__init__.py bids_app/core/tables.py bids_app/core/seeding.py /opt/build/bids_app/core/
COPY bids_app/core/dwi/__init__.py bids_app/core/dwi/profiles.py /opt/build/bids_app/core/dwi/
COPY bids_app/data /opt/build/bids_app/data
RUN set -eu; \
    if [ -d /tmp/docker-data/templateflow ]; then \
        echo "TemplateFlow: from docker-data/templateflow"; \
        mkdir -p /opt/templateflow; \
        cp -r /tmp/docker-data/templateflow/. /opt/templateflow/; \
    else \
        echo "TemplateFlow: no docker-data/templateflow, fetching MNI152NLin6Asym online"; \
        python -W ignore -c "from templateflow import api; [api.get('MNI152NLin6Asym', resolution=[1, 2], suffix=s, desc=d, extension='.nii.gz', raise_empty=True) for s, d in (('T1w', None), ('mask', 'brain'))]"; \
        find /opt/templateflow -mindepth 1 -maxdepth 1 ! -name tpl-MNI152NLin6Asym -exec rm -rf {} +; \
        find /opt/templateflow -type f -size 0 -delete; \
        find /opt/templateflow -type d -empty -delete; \
    fi; \
    if [ -d /tmp/docker-data/sources ]; then \
        echo "fetch-data: from docker-data/sources"; \
        PYTHONPATH=/opt/build python -m bids_app.cli.fetch_data --mirror /tmp/docker-data/sources --dest /opt/alsmri/data; \
    else \
        echo "fetch-data: no docker-data/sources, downloading from the manifest's upstream URLs"; \
        PYTHONPATH=/opt/build python -m bids_app.cli.fetch_data --dest /opt/alsmri/data; \
    fi; \
    rm -rf /tmp/docker-data /opt/build /opt/alsmri/data/.downloads; \
    chmod -R a+rX /opt/alsmri /opt/templateflow

# 3. The package itself (fast layer).
COPY pyproject.toml README.md /src/
COPY boilerplate /src/boilerplate
COPY bids_app /src/bids_app
RUN pip install --no-cache-dir --no-deps /src && rm -rf /src \
    && useradd --create-home --uid 1000 alsmri

USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["alsmri"]
