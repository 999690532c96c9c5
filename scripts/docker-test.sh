#!/usr/bin/env bash
# Container test (called by .ci/run and .circleci/config.yml): build the image, then run it
# read-only with no network on the real one-subject dataset: --version, participant, group.
# The sorted output file list must match tests/data/expected_outputs_ds-xa30.txt and the input
# tree must be unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${ALSMRI_SHARED:-$(cd .. && pwd)/shared}"
DOCKER_CI="${DOCKER_CI:-$SHARED/tools/docker-ci.sh}"
IMAGE="${ALSMRI_IMAGE:-alsmri:latest}"
DS="$SHARED/data/bids/ds-xa30"
OUT="$(mktemp -d /tmp/alsmri-docker-out.XXXXXX)"
chmod 777 "$OUT"

# Build context: sources mirror and TemplateFlow home in docker-data/ (git-ignored except its
# README.md). ALSMRI_DOCKER_DATA=online leaves them out, so the Dockerfile downloads the atlas
# sources and TemplateFlow files from upstream (as a public build does); default: mirror.
mkdir -p docker-data && chmod -R u+w docker-data  # copies of read-only shared files
find docker-data -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
case "${ALSMRI_DOCKER_DATA:-mirror}" in
  mirror)
    cp -r "$SHARED/data/sources" docker-data/sources
    cp -r "$SHARED/data/templateflow" docker-data/templateflow ;;
  online) echo "docker-test: ALSMRI_DOCKER_DATA=online: image data from upstream URLs" ;;
  *) echo "docker-test: ALSMRI_DOCKER_DATA must be mirror or online" >&2; exit 64 ;;
esac

before=$(cd "$DS" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum)
version=$(python3 -c "import re; print(re.search(r'__version__ = \"(.+)\"', open('bids_app/__init__.py').read()).group(1))")

export IMAGE OUT DS version
# DOCKER_CI=native uses the machine's own Docker engine (CircleCI); otherwise the private
# engine of shared/tools/docker-ci.sh.
if [ "$DOCKER_CI" = native ]; then wrap=(); else wrap=("$DOCKER_CI" run --); fi
"${wrap[@]}" bash -euo pipefail -c '
  t0=$(date +%s)
  docker build --network host --build-arg VERSION="$version" -t "$IMAGE" .
  echo "docker-test: build took $(( $(date +%s) - t0 )) s"
  docker image ls "$IMAGE" --format "docker-test: image size {{.Size}}"
  run() { docker run --rm --read-only --network none --tmpfs /tmp \
            -v "$DS":/data:ro -v "$OUT":/out "$IMAGE" "$@"; }
  got=$(run --version)
  [ "$got" = "alsmri $version" ] || { echo "docker-test: version mismatch: $got" >&2; exit 1; }
  t0=$(date +%s)
  run /data /out participant --participant-label 01 --nprocs 2
  echo "docker-test: participant took $(( $(date +%s) - t0 )) s"
  run /data /out group
'

after=$(cd "$DS" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum)
[ "$before" = "$after" ] || { echo "docker-test: input dataset changed" >&2; exit 1; }

# Run-specific log folder names are normalised before comparing.
(cd "$OUT" && find . -type f | sed -e 's|^\./||' -e 's|logs/run-[^/]*/|logs/run-ID/|' \
   -e '/logs\/run-ID\/.*\(crash\|nipype.log\)/d' | sort -u) > /tmp/alsmri-docker-outputs.txt
if ! diff -u tests/data/expected_outputs_ds-xa30.txt /tmp/alsmri-docker-outputs.txt; then
  echo "docker-test: output file list differs from tests/data/expected_outputs_ds-xa30.txt" >&2
  exit 1
fi
echo "docker-test: OK ($(wc -l < /tmp/alsmri-docker-outputs.txt) files)"
