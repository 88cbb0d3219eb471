#!/usr/bin/env bash
# Install minik8s as systemd services on a Debian 12 machine (or into a staging root).
#
#   control plane:  minik8s-etcd, minik8s-apiserver, minik8s-controller-manager, minik8s-scheduler
#   node:           minik8s-kubelet, minik8s-proxy, minik8s-dns   (and docker.service)
#
# Steps (each is idempotent, so running the script again converges and keeps operator edits):
#   1. minik8s itself: a venv in /opt/minik8s built from this checkout (or --minik8s-bin PATH);
#   2. the system user `minik8s` (the control plane, etcd and DNS run as it; kubelet and proxy as root);
#   3. unit files into /etc/systemd/system (always rewritten: they are ours);
#   4. one env file per unit in /etc/minik8s/<unit>.env holding its flags (written only if missing);
#   5. credentials in /etc/minik8s: `minik8s bootstrap` on a control plane, or copied from the
#      control plane's bootstrap directory with --credentials DIR on a node. Each kubelet has its own
#      identity (system:node:NAME): the control plane issues it (--role all for itself, --cluster-node NAME
#      for the others, or later `minik8s bootstrap --data-dir /etc/minik8s ... --node NAME`) and the node's
#      copy becomes /etc/minik8s/kubeconfigs/node.kubeconfig;
#   6. systemctl daemon-reload (and `enable --now` with --enable).
#
# With --root DIR everything lands under DIR (users, ownership and systemctl are skipped) so the result
# can be inspected or tested; --dry-run prints what would change and changes nothing.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROLE=all ROOT="" DRY=0 ENABLE=0 MINIK8S_BIN="" CREDENTIALS="" SERVER=""
NODE_NAME=$(hostname | tr 'A-Z' 'a-z') NODE_IP=""
CLUSTER_CIDR=10.244.0.0/16 SERVICE_CIDR=10.96.0.0/12 NETWORK_BACKEND=host-gw PROXY_MODE=iptables
APISERVER_HOSTS=() KUBELET_HOSTS=() CLUSTER_NODES=()
USER_NAME=minik8s

usage() {
    cat <<EOF
usage: $0 [--role control-plane|node|all] [--node-ip IP] [--node-name NAME] [--server https://HOST:6443]
          [--apiserver-host H]... [--kubelet-host H]... [--cluster-node NAME]... [--credentials DIR]
          [--minik8s-bin PATH]
          [--cluster-cidr CIDR] [--service-cidr CIDR] [--network-backend host-gw|vxlan]
          [--proxy-mode iptables|nftables|ipvs] [--root DIR] [--dry-run] [--enable]

  --role           what this machine runs (default all: control plane and node)
  --node-ip        this machine's address other nodes and the apiserver reach (required)
  --server         the apiserver URL put into every kubeconfig (default https://NODE_IP:6443)
  --credentials    a copy of the control plane's /etc/minik8s (a node needs its CA, kubelet
                   certificate and kubeconfigs, including kubeconfigs/node-NAME.kubeconfig for its own
                   NAME — never tokens.csv: the kubelet asks the apiserver about tokens); a control plane
                   runs `minik8s bootstrap`
  --cluster-node   on a control plane: also issue kubelet credentials for node NAME (repeatable)
  --minik8s-bin    use this minik8s executable instead of building a venv in /opt/minik8s
  --root DIR       install into the staging root DIR (no users, no systemctl)
  --dry-run        print the actions, change nothing
  --enable         systemctl enable --now the role's units
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
        --role) ROLE=$2; shift ;;
        --node-ip) NODE_IP=$2; shift ;;
        --node-name) NODE_NAME=$2; shift ;;
        --server) SERVER=$2; shift ;;
        --apiserver-host) APISERVER_HOSTS+=("$2"); shift ;;
        --kubelet-host) KUBELET_HOSTS+=("$2"); shift ;;
        --cluster-node) CLUSTER_NODES+=("$2"); shift ;;
        --credentials) CREDENTIALS=$2; shift ;;
        --minik8s-bin) MINIK8S_BIN=$2; shift ;;
        --cluster-cidr) CLUSTER_CIDR=$2; shift ;;
        --service-cidr) SERVICE_CIDR=$2; shift ;;
        --network-backend) NETWORK_BACKEND=$2; shift ;;
        --proxy-mode) PROXY_MODE=$2; shift ;;
        --root) ROOT=$(realpath -m "$2"); shift ;;
        --dry-run) DRY=1 ;;
        --enable) ENABLE=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }
run() { if [ "$DRY" = 1 ]; then echo "+ $*"; else "$@"; fi; }

case $ROLE in
    control-plane) UNITS="etcd apiserver controller-manager scheduler" ;;
    node) UNITS="kubelet proxy dns" ;;
    all) UNITS="etcd apiserver controller-manager scheduler kubelet proxy dns" ;;
    *) die "--role: control-plane, node or all" ;;
esac
[ -n "$NODE_IP" ] || die "--node-ip is required (the address other machines reach this one at)"
[ -n "$SERVER" ] || SERVER="https://$NODE_IP:6443"
SECURE_PORT=$(echo "$SERVER" | sed -nE 's#^https://(\[[^]]*\]|[^:/]*)(:([0-9]+))?.*#\3#p')
SECURE_PORT=${SECURE_PORT:-443}
[ "$ENABLE" = 1 ] && [ -n "$ROOT" ] && die "--enable and --root exclude each other"
[ -n "$ROOT" ] || [ "$(id -u)" = 0 ] || [ "$DRY" = 1 ] || die "run as root (or give --root DIR / --dry-run)"

ETC=$ROOT/etc/minik8s
UNIT_DIR=$ROOT/etc/systemd/system
STATE=$ROOT/var/lib/minik8s

# ---- 1. the minik8s executable ------------------------------------------------------------------------
if [ -z "$MINIK8S_BIN" ]; then
    [ -z "$ROOT" ] || die "--root needs --minik8s-bin (a venv is not relocatable into a staging root)"
    MINIK8S_BIN=/opt/minik8s/bin/minik8s
    if [ ! -x "$MINIK8S_BIN" ] || [ "$REPO/pyproject.toml" -nt "$MINIK8S_BIN" ]; then
        say "installing minik8s from $REPO into /opt/minik8s"
        run python3 -m venv /opt/minik8s
        run /opt/minik8s/bin/pip install -q --upgrade "$REPO"
    fi
fi
if [ "$DRY" = 0 ]; then
    [ -x "$MINIK8S_BIN" ] || die "$MINIK8S_BIN is not executable"
fi

# ---- 2. the service user --------------------------------------------------------------------------------
if [ -z "$ROOT" ] && ! getent passwd "$USER_NAME" >/dev/null; then
    run useradd --system --user-group --home-dir /var/lib/minik8s --no-create-home --shell /usr/sbin/nologin \
        "$USER_NAME"
fi

# ---- 3. units -----------------------------------------------------------------------------------------
run mkdir -p "$UNIT_DIR" "$ETC" "$STATE/kubelet"
for u in $UNITS; do
    src="$HERE/units/minik8s-$u.service"
    dst="$UNIT_DIR/minik8s-$u.service"
    text=$(sed "s#/opt/minik8s/bin/minik8s#$MINIK8S_BIN#g" "$src")
    if [ -f "$dst" ] && [ "$(cat "$dst")" = "$text" ]; then
        continue
    fi
    say "unit $dst"
    [ "$DRY" = 1 ] || printf '%s\n' "$text" >"$dst"
done

# ---- 4. env files (kept when present: they are the operator's) ------------------------------------------
for u in $UNITS; do
    dst="$ETC/$u.env"
    if [ -f "$dst" ]; then
        say "kept $dst"
        continue
    fi
    say "env $dst"
    [ "$DRY" = 1 ] && continue
    sed -e "s#@NODE_NAME@#$NODE_NAME#g" -e "s#@NODE_IP@#$NODE_IP#g" -e "s#@SECURE_PORT@#$SECURE_PORT#g" \
        -e "s#@ADVERTISE_ADDRESS@#$NODE_IP#g" -e "s#@CLUSTER_CIDR@#$CLUSTER_CIDR#g" \
        -e "s#@SERVICE_CIDR@#$SERVICE_CIDR#g" -e "s#@NETWORK_BACKEND@#$NETWORK_BACKEND#g" \
        -e "s#@PROXY_MODE@#$PROXY_MODE#g" "$HERE/env/$u.env" >"$dst.tmp"
    chmod 0640 "$dst.tmp"
    mv "$dst.tmp" "$dst"
done

# ---- 5. credentials -----------------------------------------------------------------------------------
if [ -n "$CREDENTIALS" ]; then
    [ -f "$CREDENTIALS/pki/ca.crt" ] || die "--credentials $CREDENTIALS: no pki/ca.crt (run minik8s bootstrap there)"
    say "credentials from $CREDENTIALS"
    run mkdir -p "$ETC/pki" "$ETC/kubeconfigs"
    files="pki/ca.crt"
    case $ROLE in
        node) files="$files pki/kubelet.crt pki/kubelet.key \
                     kubeconfigs/kube-proxy.kubeconfig kubeconfigs/minik8s-dns.kubeconfig" ;;
        *) files="$files tokens.csv $(cd "$CREDENTIALS" && find pki kubeconfigs admin.kubeconfig -type f 2>/dev/null | sort)" ;;
    esac
    for f in $files; do
        run install -m 0600 "$CREDENTIALS/$f" "$ETC/$f"
    done
    if [ "$ROLE" != control-plane ]; then
        own="$CREDENTIALS/kubeconfigs/node-$NODE_NAME.kubeconfig"
        [ -f "$own" ] || die "no kubelet credentials for node $NODE_NAME in $CREDENTIALS: on the control plane run" \
            "minik8s bootstrap --data-dir /etc/minik8s --server URL --node $NODE_NAME, then copy it again"
        run install -m 0600 "$own" "$ETC/kubeconfigs/node.kubeconfig"
    fi
elif [ "$ROLE" = node ]; then
    [ -f "$ETC/pki/ca.crt" ] || [ "$DRY" = 1 ] || \
        die "a node needs the control plane's credentials: --credentials DIR (a copy of its /etc/minik8s)"
else
    args=(--data-dir "$ETC" --server "$SERVER" --apiserver-host "$NODE_IP" --apiserver-host 127.0.0.1)
    for h in "${APISERVER_HOSTS[@]}"; do args+=(--apiserver-host "$h"); done
    [ "$ROLE" = all ] && args+=(--kubelet-host "$NODE_IP" --kubelet-host "$NODE_NAME" --node "$NODE_NAME")
    for h in "${KUBELET_HOSTS[@]}"; do args+=(--kubelet-host "$h"); done
    for n in "${CLUSTER_NODES[@]}"; do args+=(--node "$n"); done
    say "bootstrap: credentials for $SERVER in $ETC"
    if [ "$DRY" = 1 ]; then echo "+ $MINIK8S_BIN bootstrap ${args[*]}"; else
        out=$("$MINIK8S_BIN" bootstrap "${args[@]}" 2>&1) || { echo "$out" >&2; die "minik8s bootstrap failed"; }
    fi
    # This machine's kubelet runs as itself: its kubeconfig is the one every unit file names.
    [ "$ROLE" = all ] && run install -m 0600 "$ETC/kubeconfigs/node-$NODE_NAME.kubeconfig" \
        "$ETC/kubeconfigs/node.kubeconfig"
fi

# The control plane runs as $USER_NAME: credentials are root:$USER_NAME, group-readable, nothing for others.
if [ "$DRY" = 0 ]; then
    chmod -R u+rwX,g+rX,g-w,o-rwx "$ETC"
    if [ -z "$ROOT" ]; then
        chown -R "root:$USER_NAME" "$ETC"
        mkdir -p "$STATE/etcd" && chown "$USER_NAME:$USER_NAME" "$STATE/etcd" && chmod 0700 "$STATE/etcd"
    fi
fi

# ---- 6. systemd ---------------------------------------------------------------------------------------
if [ -n "$ROOT" ]; then
    say "staged into $ROOT (no systemctl)"
elif command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    run systemctl daemon-reload
    if [ "$ENABLE" = 1 ]; then
        [ "$ROLE" = control-plane ] || run systemctl enable --now docker.service
        for u in $UNITS; do run systemctl enable --now "minik8s-$u.service"; done
    else
        say "start with: systemctl enable --now $(for u in $UNITS; do printf 'minik8s-%s ' "$u"; done)"
    fi
else
    say "systemd is not running here: units installed, not started"
fi
