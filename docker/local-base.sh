#!/usr/bin/env bash
# A local stand-in for python:3.11-slim-bookworm, made from Debian's packages alone, for machines that
# cannot reach Docker Hub (this project's CI): debootstrap a minbase bookworm with Debian's python3
# (3.11), then a venv at /opt/python first on PATH, so `python` and `pip` are there as in the official
# image (Debian's own pip refuses installs into the system Python, PEP 668).
#   bash docker/local-base.sh            # tags localhost/jat-python:3.11-bookworm; skips when it exists
# Needs root, podman and debootstrap; reaches deb.debian.org, and pip's indexes for pip's own upgrade.
set -euo pipefail

TAG=${JAT_PYTHON_IMAGE:-localhost/jat-python:3.11-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOTFS_TAG=localhost/jat-python-rootfs:bookworm
# crun cannot run containers on this hybrid cgroup v1 host, and podman's default nofile limit (1048576)
# is more than this VM grants a container: runc and explicit limits work.
PODMAN=(podman --runtime runc)
LIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)

for tool in podman debootstrap python3; do
    command -v "$tool" > /dev/null || { echo "local-base: $tool is not installed" >&2; exit 2; }
done
if "${PODMAN[@]}" image exists "$TAG"; then
    echo "local-base: $TAG exists, skipping (podman rmi $TAG to rebuild it)"
    exit 0
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
source "$(dirname "${BASH_SOURCE[0]}")/local-pip.sh"
host_pip_mounts "$scratch/pip"

# The rootfs image stays tagged until the base is built, so a failed build does not repeat debootstrap.
if ! "${PODMAN[@]}" image exists "$ROOTFS_TAG"; then
    rootfs=$scratch/rootfs
    # The rootfs directory becomes the image's /: mktemp's 0700 would lock out non-root users.
    mkdir -m 755 "$rootfs"
    # netbase (/etc/services, /etc/protocols) and tzdata: the official slim image has them too.
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,netbase,tzdata \
        bookworm "$rootfs" "$MIRROR"
    # The official image's apt sources: the release, its updates and its security updates.
    rm -f "$rootfs/etc/apt/sources.list"
    cat > "$rootfs/etc/apt/sources.list.d/debian.sources" << SOURCES
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | "${PODMAN[@]}" import - "$ROOTFS_TAG"
    rm -rf "$rootfs"
fi

mkdir "$scratch/context"
"${PODMAN[@]}" build "${LIMITS[@]}" --network host "${PIP_MOUNTS[@]}" -t "$TAG" -f - "$scratch/context" \
    << CONTAINERFILE
FROM $ROOTFS_TAG
ENV LANG=C.UTF-8 PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y \\
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \\
    && python3 -m venv /opt/python \\
    && pip install --no-cache-dir --upgrade pip setuptools wheel \\
    && python --version && pip --version
CMD ["python3"]
CONTAINERFILE
"${PODMAN[@]}" untag "$ROOTFS_TAG"
echo "local-base: built $TAG"
