#!/usr/bin/env bash
# Start dockerd when it is not already answering (the machines here do not start it at boot).
set -eu
if docker info >/dev/null 2>&1; then exit 0; fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    systemctl start docker && exit 0
fi
mkdir -p /var/log
nohup dockerd >/var/log/minik8s-dockerd.log 2>&1 &
for _ in $(seq 1 100); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 0.2
done
echo "dockerd did not start; see /var/log/minik8s-dockerd.log" >&2
exit 1
