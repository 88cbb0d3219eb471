#!/bin/bash
# The compose lab's entrypoint (PID 1 is tini): `minik8s-entrypoint bootstrap | control-plane | node`.
#
#   bootstrap      `minik8s bootstrap` into /etc/minik8s (the shared `credentials` volume), once; the
#                  other roles wait for its marker file before they start anything
#   control-plane  etcd on loopback (nothing but the apiserver can reach it), apiserver on the lab
#                  network, controller-manager, scheduler; then kube-system/kube-dns -> the nodes' DNS
#   node           its own dockerd (Docker in Docker: pods are its containers), kubelet, kube-proxy and
#                  cluster DNS on the node's address
#
# Every process runs in the background; when one exits the container stops (compose restarts it), and
# SIGTERM stops them in reverse order (a node removes its pods' containers and stops its dockerd first).
set -euo pipefail

CREDS=/etc/minik8s
MARKER=$CREDS/.bootstrapped
CP_IP=${MINIK8S_CONTROL_PLANE_IP:-}
SERVER=https://$CP_IP:6443
CLUSTER_CIDR=${MINIK8S_CLUSTER_CIDR:-10.244.0.0/16}
SERVICE_CIDR=${MINIK8S_SERVICE_CIDR:-10.96.0.0/12}
LOG_DIR=/var/log/minik8s
PIDS=()

log() { echo "minik8s-entrypoint[$ROLE]: $*" >&2; }

start() {  # start NAME CMD...: in the background, output prefixed and into $LOG_DIR/NAME.log
    local name=$1; shift
    "$@" > >(tee -a "$LOG_DIR/$name.log" | sed -u "s/^/[$name] /") 2>&1 &
    PIDS+=($!)
    log "started $name (pid $!)"
}

wait_for() {  # wait_for SECONDS WHAT CMD...
    local seconds=$1 what=$2; shift 2
    for _ in $(seq 1 $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    log "timed out after ${seconds}s waiting for $what"
    return 1
}

stop_all() {
    trap - TERM INT
    log "stopping"
    [ "$ROLE" = node ] && node_cleanup
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null || true; done
    wait || true
    exit 0
}

supervise() {
    trap stop_all TERM INT
    wait -n "${PIDS[@]}" || true
    log "a process exited: stopping the others"
    stop_all
    exit 1
}

isolate() {
    # Docker gives even an `internal` network a default route (to the host's bridge address, where its
    # FORWARD rules drop what would go further). Nothing here has business outside the lab: no default
    # route at all, and the cluster and service ranges fail locally unless something more specific
    # (the kubelet's pod network, kube-proxy's sink) claims them.
    ip route del default 2>/dev/null || true
    ip route replace unreachable "$CLUSTER_CIDR" metric 5000
    ip route replace unreachable "$SERVICE_CIDR" metric 5000
}

wait_credentials() {
    wait_for 120 "credentials from the bootstrap service" test -f "$MARKER"
}

ROLE=${1:-}
mkdir -p "$LOG_DIR"
case $ROLE in
bootstrap|control-plane|node) [ -n "$CP_IP" ] || { log "MINIK8S_CONTROL_PLANE_IP is not set"; exit 2; } ;;
esac
case $ROLE in
bootstrap)
    if [ ! -f "$MARKER" ]; then
        args=(--data-dir "$CREDS" --server "$SERVER" --apiserver-host "$CP_IP" --apiserver-host control-plane)
        for ip in ${MINIK8S_NODE_IPS:-}; do args+=(--kubelet-host "$ip"); done
        for name in ${MINIK8S_NODE_NAMES:-}; do args+=(--kubelet-host "$name" --node "$name"); done
        minik8s bootstrap "${args[@]}"
        touch "$MARKER"
    fi
    log "credentials in the credentials volume"
    ;;

control-plane)
    isolate
    wait_credentials
    start etcd etcd --name control-plane --data-dir /var/lib/etcd \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster control-plane=http://127.0.0.1:2380 --log-level warn
    wait_for 30 etcd python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:2379/health", timeout=1)'
    start apiserver minik8s apiserver --etcd-servers http://127.0.0.1:2379 --bind-address 0.0.0.0 \
        --secure-port 6443 --advertise-address "$CP_IP" --service-cluster-ip-range "$SERVICE_CIDR" \
        --tls-cert-file $CREDS/pki/apiserver.crt --tls-private-key-file $CREDS/pki/apiserver.key \
        --token-auth-file $CREDS/tokens.csv --kubelet-certificate-authority $CREDS/pki/ca.crt \
        --service-account-signing-key-file $CREDS/pki/sa.key --enable-admission-plugins ServiceAccount
    start controller-manager minik8s controller-manager \
        --kubeconfig $CREDS/kubeconfigs/kube-controller-manager.kubeconfig --cluster-cidr "$CLUSTER_CIDR" \
        --root-ca-file $CREDS/pki/ca.crt ${MINIK8S_CONTROLLER_MANAGER_ARGS:-}
    start scheduler minik8s scheduler --kubeconfig $CREDS/kubeconfigs/kube-scheduler.kubeconfig \
        ${MINIK8S_SCHEDULER_ARGS:-}
    # cluster DNS runs on every node: the selector-less kube-dns Service lists the nodes' addresses
    /opt/minik8s/bin/python /usr/local/lib/minik8s/kube-dns.py --kubeconfig $CREDS/admin.kubeconfig \
        --wait 120 ${MINIK8S_NODE_IPS:-} || log "kube-dns Service not written"
    supervise
    ;;

node)
    NODE_NAME=${MINIK8S_NODE_NAME:-$(hostname)}
    NODE_IP=${MINIK8S_NODE_IP:-$(ip -4 -o addr show dev eth0 | awk '{split($4, a, "/"); print a[1]; exit}')}
    # Inner containers' cgroups nest under this container's own, so removing it removes them.
    own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3; exit}' /proc/self/cgroup)
    node_cleanup() {
        for pid in "${PIDS[@]:1}"; do kill -TERM "$pid" 2>/dev/null || true; done
        ids=$(docker ps -aq 2>/dev/null || true)
        [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
    }
    isolate
    wait_credentials
    start dockerd dockerd --bridge=none --iptables=false --ip6tables=false --ip-masq=false --userland-proxy=false \
        --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent "${own:-}/minik8s" --log-level warn
    wait_for 60 dockerd docker version
    start kubelet minik8s kubelet --kubeconfig "$CREDS/kubeconfigs/node-$NODE_NAME.kubeconfig" --node-name "$NODE_NAME" \
        --node-ip "$NODE_IP" --address "$NODE_IP" --root-dir /var/lib/minik8s/kubelet \
        --tls-cert-file $CREDS/pki/kubelet.crt --tls-private-key-file $CREDS/pki/kubelet.key \
        --authentication-token-webhook --cluster-cidr "$CLUSTER_CIDR" \
        --service-cluster-ip-range "$SERVICE_CIDR" --network-backend "${MINIK8S_NETWORK_BACKEND:-vxlan}" \
        ${MINIK8S_KUBELET_ARGS:-}
    start proxy minik8s proxy --kubeconfig $CREDS/kubeconfigs/kube-proxy.kubeconfig \
        --hostname-override "$NODE_NAME" --proxy-mode "${MINIK8S_PROXY_MODE:-iptables}" \
        --cluster-cidr "$CLUSTER_CIDR" --service-cluster-ip-range "$SERVICE_CIDR" \
        --healthz-bind-address "$NODE_IP"
    # no --upstream: names outside the cluster domain are REFUSED, nothing is forwarded out of the lab
    start dns minik8s dns --kubeconfig $CREDS/kubeconfigs/minik8s-dns.kubeconfig --bind "$NODE_IP" --port 53
    supervise
    ;;

"")
    echo "usage: minik8s-entrypoint bootstrap|control-plane|node (or any command)" >&2
    exit 2
    ;;
*)
    exec "$@"
    ;;
esac
