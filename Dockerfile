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

# 2. Templates and atlases, built from the sources mirror in the build context (docker-data/,
#    git-ignored, filled from ../shared/data by scripts/docker-test.sh). Only the data manager's
#    files are copied here, so code changes elsewhere do not rebuild this layer.
COPY docker-data/templateflow /opt/templateflow
COPY docker-data/sources /tmp/mirror
COPY bids_app/__init__.py bids_app/errors.py /opt/build/bids_app/
COPY bids_app/cli/__init__.py bids_app/cli/fetch_data.py /opt/build/bids_app/cli/
COPY bids_app/atlases /opt/build/bids_app/atlases
COPY bids_app/data /opt/build/bids_app/data
RUN PYTHONPATH=/opt/build python -m bids_app.cli.fetch_data --mirror /tmp/mirror --dest /opt/alsmri/data \
    && rm -rf /tmp/mirror /opt/build \
    && chmod -R a+rX /opt/alsmri /opt/templateflow

# 3. The package itself (fast layer).
COPY pyproject.toml README.md /src/
COPY boilerplate /src/boilerplate
COPY bids_app /src/bids_app
RUN pip install --no-cache-dir --no-deps /src && rm -rf /src \
    && useradd --create-home --uid 1000 alsmri

USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["alsmri"]
