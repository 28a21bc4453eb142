#!/usr/bin/env bash
# Builds docker/Dockerfile's image with podman on this project's machines, which reach neither Docker
# Hub (the python base image) nor PyTorch's index: the base is docker/local-base.sh's stand-in, built
# from Debian's packages, and pip in the build resolves as the host's pip does (its config and local
# wheels mounted read-only, docker/local-pip.sh), so torch comes from the local CPU wheel, as in
# `make install`. The Dockerfile itself is the one Docker BuildKit builds.
#   bash docker/build-local.sh [extra podman build args]   # tags $JAT_IMAGE (localhost/jat-pipeline:test)
# Then, e.g.:
#   podman --runtime runc run --rm --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 --shm-size 2g \
#       -e RAY_AUTH_MODE=disabled localhost/jat-pipeline:test pipeline demo --out /cache/demo
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TAG=${JAT_IMAGE:-localhost/jat-pipeline:test}
BASE=${JAT_PYTHON_IMAGE:-localhost/jat-python:3.11-bookworm}
# The pip default index: with the host's find-links, torch==2.13.0 resolves to the local 2.13.0+cpu.
TORCH_INDEX=${JAT_TORCH_INDEX:-https://pypi.org/simple}
PODMAN=(podman --runtime runc)
LIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)

JAT_PYTHON_IMAGE=$BASE bash docker/local-base.sh

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
source docker/local-pip.sh
host_pip_mounts "$scratch/pip"
# buildah 1.28 reads only .containerignore/.dockerignore at the context's root, so the Dockerfile's own
# ignore file (BuildKit's <Dockerfile>.dockerignore) is passed by name; and it does not expand ARGs when
# it decides which stages `FROM base-${VARIANT}` needs, so it would skip base-cpu and then fail to pull
# "base-cpu" from a registry: --skip-unused-stages=false builds every stage (base-gpu is two ENV lines).
# --no-cache: buildah 1.28 cannot bind-mount a stage it took from its layer cache (`RUN
# --mount=type=bind,from=wheel` finds no /wheels; buildah#4375, fixed in 1.29), so every build is fresh
# (--layers=false would bring the "base-cpu" pull back).
old=$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$TAG" 2> /dev/null || true)
"${PODMAN[@]}" build "${LIMITS[@]}" --network host "${PIP_MOUNTS[@]}" \
    -f docker/Dockerfile --ignorefile docker/Dockerfile.dockerignore --skip-unused-stages=false --no-cache \
    --build-arg PYTHON_IMAGE="$BASE" --build-arg TORCH_INDEX="$TORCH_INDEX" -t "$TAG" "$@" .
# A fresh build leaves the previous image untagged: remove it and its layers (vfs copies, GBs each).
if [[ -n $old && $old != $("${PODMAN[@]}" image inspect --format '{{.Id}}' "$TAG") ]]; then
    "${PODMAN[@]}" rmi "$old" > /dev/null || true
fi
echo "build-local: built $TAG"
