#!/usr/bin/env bash
# Copy images from the host's dockerd into every node's inner dockerd (there is no registry):
#
#   deploy/compose/load-images.sh [IMAGE...]      default: the images deploy/images/build.sh makes
#
# Runs `docker save | docker-compose exec -T NODE docker load` per node; extra docker-compose options
# (a project name, another file) come through COMPOSE ("-p mylab -f other.yml").
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
COMPOSE_CMD=${COMPOSE_CMD:-docker-compose}
COMPOSE=${COMPOSE:-"-f $HERE/docker-compose.yml"}
NODES=${NODES:-"node1 node2"}
[ $# -gt 0 ] || set -- minik8s/pause:3.9 minik8s/busybox:1.36 minik8s/myapp:v1 minik8s/myapp:v2
for image in "$@"; do
    docker image inspect "$image" >/dev/null 2>&1 || { echo "load-images: $image is not in the host's dockerd" >&2; exit 1; }
done
tar=$(mktemp)
trap 'rm -f "$tar"' EXIT
docker save -o "$tar" "$@"
for node in $NODES; do
    # shellcheck disable=SC2086
    $COMPOSE_CMD $COMPOSE exec -T "$node" docker load -q <"$tar" >/dev/null
    echo "load-images: $* -> $node"
done
