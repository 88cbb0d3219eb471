#!/usr/bin/env bash
# Build the compose lab's node image locally (no registry needed), in two cached layers:
#
#   minik8s/node-base:bookworm-<hash>   debootstrap of Debian bookworm (minbase + the packages below),
#                                       `docker import`ed; rebuilt only when the package list changes
#                                       (~1-2 min, ~600 MB: the first build is the slow one)
#   minik8s/node:src-<hash>             + a venv in /opt/minik8s holding minik8s and its dependencies,
#   minik8s/node:latest                 installed from wheels (`pip wheel` of this repo's committed tree,
#                                       dependencies from PyPI) with `docker build --network none`;
#                                       rebuilt only when those sources change (~20-30 s)
#
# Every service of docker-compose.yml runs this image (etcd, apiserver, ..., DinD nodes).
#
#   deploy/compose/build-image.sh                 build what is missing, print the image name
#   FORCE=1 deploy/compose/build-image.sh         rebuild the top layer
#   FORCE=2 deploy/compose/build-image.sh         rebuild both layers
#
# Environment: DEBIAN_MIRROR (http://deb.debian.org/debian), PYTHON (the repo's .venv python, or python3;
# must be the same minor version as bookworm's python3, 3.11, since binary wheels are built for it),
# SOURCE (HEAD, or worktree for uncommitted changes), IMAGE (minik8s/node), CACHE_DIR (~/.cache/minik8s-compose: wheels of the dependencies).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DOCKER=${DOCKER:-docker}
IMAGE=${IMAGE:-minik8s/node}
BASE_IMAGE=${BASE_IMAGE:-minik8s/node-base}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE_DIR=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/minik8s-compose}
FORCE=${FORCE:-0}
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi

# What a node needs: a container runtime for pods (docker.io, inside the node), the kube-proxy and pod
# network tools, etcd for the control-plane service, busybox-static for debugging, tini as PID 1.
PACKAGES="python3,python3-venv,iptables,nftables,iproute2,docker.io,conntrack,busybox-static,etcd-server,\
ca-certificates,procps,tini,kmod,ipset"

log() { echo "build-image: $*" >&2; }
have() { $DOCKER image inspect "$1" >/dev/null 2>&1; }

work=$(mktemp -d)
cleanup() {
    # a debootstrap interrupted half-way leaves its /proc and /sys mounts in the rootfs
    if [ -d "$work/rootfs" ]; then
        for m in $(awk -v p="$work/rootfs/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r); do
            umount -l "$m" 2>/dev/null || true
        done
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# ---- layer 1: the Debian base -------------------------------------------------------------------------
base_hash=$(printf '%s\n%s\n' "$PACKAGES" "$DEBIAN_MIRROR" | sha256sum | cut -c1-12)
base="$BASE_IMAGE:bookworm-$base_hash"
if [ "$FORCE" = 2 ] || ! have "$base"; then
    command -v debootstrap >/dev/null || { log "debootstrap is missing (apt-get install debootstrap)"; exit 1; }
    [ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 1; }
    log "debootstrap bookworm into $work/rootfs (first build: 1-2 minutes)"
    started=$(date +%s)
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$work/rootfs" "$DEBIAN_MIRROR" \
        >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
    chroot "$work/rootfs" apt-get clean
    rm -rf "$work/rootfs"/var/lib/apt/lists/* "$work/rootfs"/var/cache/apt/*.bin "$work/rootfs"/var/log/*.log
    # docker.io's package wants to start a dockerd at install time; nothing must start at boot here
    rm -f "$work/rootfs/usr/sbin/policy-rc.d"
    tar -C "$work/rootfs" --numeric-owner -c . | $DOCKER import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
    log "built $base in $(( $(date +%s) - started ))s"
    rm -rf "$work/rootfs"
fi

# ---- layer 2: minik8s from this repo ------------------------------------------------------------------
# From the committed tree (HEAD) by default, so other people's uncommitted work never lands in the image;
# SOURCE=worktree takes the working tree as it is. The tag carries a hash of exactly what goes in.
PACKAGES_DIRS="pyproject.toml api client apiserver controllers scheduler kubelet kubeproxy clusterdns lab cli ctl"
LAYER_FILES="$HERE/Dockerfile $HERE/entrypoint.sh $REPO/deploy/kube-dns.py"
mkdir -p "$work/src"
if [ "${SOURCE:-HEAD}" = worktree ]; then
    files=$(cd "$REPO" && git ls-files -co --exclude-standard -- $PACKAGES_DIRS | LC_ALL=C sort)
    (cd "$REPO" && tar -c $files) | tar -x -C "$work/src"
    src_id=$(cd "$REPO" && sha256sum $files | sha256sum)
else
    present=$(cd "$REPO" && git ls-tree --name-only HEAD -- $PACKAGES_DIRS)
    (cd "$REPO" && git archive HEAD -- $present) | tar -x -C "$work/src"
    src_id=$(cd "$REPO" && git ls-tree HEAD -- $present)
fi
src_hash=$( { echo "$src_id"; cat $LAYER_FILES; echo "$base"; } | sha256sum | cut -c1-12)
image="$IMAGE:src-$src_hash"
if [ "$FORCE" != 0 ] || ! have "$image"; then
    started=$(date +%s)
    want=$($DOCKER run --rm --network none "$base" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    got=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    if [ "$want" != "$got" ]; then
        log "$PYTHON is Python $got but the image has $want: set PYTHON to a python$want"; exit 1
    fi
    mkdir -p "$CACHE_DIR/wheels" "$work/ctx/wheels"
    log "pip wheel of minik8s (dependencies from PyPI, cached in $CACHE_DIR/wheels)"
    pip() { "$PYTHON" -m pip wheel -q --disable-pip-version-check "$@" >>"$work/pip.log" 2>&1 ||
        { tail -30 "$work/pip.log" >&2; exit 1; }; }
    pip --no-deps -w "$work/ctx/wheels" "$work/src"
    # An older minik8s wheel of the same version in the cache would be taken as "already downloaded",
    # with its old dependency list: only dependency wheels are cached.
    rm -f "$CACHE_DIR"/wheels/minik8s-*.whl
    pip -w "$CACHE_DIR/wheels" --find-links "$CACHE_DIR/wheels" "$(ls "$work"/ctx/wheels/minik8s-*.whl)"
    rm -f "$CACHE_DIR"/wheels/minik8s-*.whl
    find "$CACHE_DIR/wheels" -name '*.whl' ! -name 'minik8s-*' -exec cp {} "$work/ctx/wheels/" \;
    cp $LAYER_FILES "$work/ctx/"
    DOCKER_BUILDKIT=0 $DOCKER build -q --force-rm --network none --build-arg "BASE=$base" -t "$image" "$work/ctx" \
        >"$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; exit 1; }
    log "built $image in $(( $(date +%s) - started ))s"
fi
$DOCKER tag "$image" "$IMAGE:latest"
echo "$image"
