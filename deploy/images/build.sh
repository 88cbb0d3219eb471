#!/usr/bin/env bash
# Build the images tests and examples use, into the local dockerd, from Debian's busybox-static
# (there is no registry to pull from). Idempotent: an image already present is left alone unless
# FORCE=1.
#
#   minik8s/pause:3.9     the pod sandbox: holds the network namespace, exits cleanly on SIGTERM
#   minik8s/busybox:1.36  a shell and the usual tools, for test pods
#   minik8s/myapp:v1      a web app on :80 answering with its pod name ("/" and "/hostname.html")
#   minik8s/myapp:v2      the same, reporting version v2 (for rolling updates)
set -euo pipefail
DOCKER=${DOCKER:-docker}
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || { echo "busybox-static is missing (apt-get install busybox-static)" >&2; exit 1; }

have() { [ "${FORCE:-0}" != 1 ] && $DOCKER image inspect "$1" >/dev/null 2>&1; }

rootfs() {  # rootfs DIR: a busybox root with every applet linked
    local d=$1
    mkdir -p "$d"/{bin,sbin,etc,tmp,www,proc,sys,dev,var/run,root}
    cp "$BUSYBOX" "$d/bin/busybox"
    for applet in $("$BUSYBOX" --list); do
        [ -e "$d/bin/$applet" ] || ln -s busybox "$d/bin/$applet"
    done
    echo "root:x:0:0:root:/root:/bin/sh" > "$d/etc/passwd"
    echo "root:x:0:" > "$d/etc/group"
    echo "nobody:x:65534:65534:nobody:/:/bin/false" >> "$d/etc/passwd"
    chmod 1777 "$d/tmp"
}

import() {  # import DIR IMAGE CHANGE...
    local d=$1 image=$2; shift 2
    local args=()
    for c in "$@"; do args+=(--change "$c"); done
    tar -C "$d" -c . | $DOCKER import "${args[@]}" - "$image" >/dev/null
    echo "built $image"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! have minik8s/busybox:1.36; then
    rootfs "$work/busybox"
    import "$work/busybox" minik8s/busybox:1.36 'CMD ["/bin/sh"]' 'ENV PATH=/bin:/sbin'
fi

if ! have minik8s/pause:3.9; then
    rootfs "$work/pause"
    cat > "$work/pause/pause" <<'SH'
#!/bin/sh
# Sleep forever as PID 1; exit at once on SIGTERM/SIGINT (a shell as PID 1 ignores them otherwise).
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
SH
    chmod +x "$work/pause/pause"
    import "$work/pause" minik8s/pause:3.9 'ENTRYPOINT ["/pause"]' 'ENV PATH=/bin:/sbin'
fi

for version in v1 v2; do
    if ! have "minik8s/myapp:$version"; then
        rootfs "$work/myapp-$version"
        cat > "$work/myapp-$version/serve" <<SH
#!/bin/sh
# The classic "myapp" demo: / says hello with the version, /hostname.html answers with the pod name.
trap 'exit 0' TERM INT
hostname > /www/hostname.html
echo "Hello MyApp | Version: $version | <a href=\"hostname.html\">Pod Name</a>" > /www/index.html
httpd -f -p \${PORT:-80} -h /www &
wait \$!
SH
        chmod +x "$work/myapp-$version/serve"
        import "$work/myapp-$version" "minik8s/myapp:$version" 'ENTRYPOINT ["/serve"]' 'EXPOSE 80' 'ENV PATH=/bin:/sbin'
    fi
done
