"""IPVS end-to-end checks, run where the kernel has IP_VS: inside the qemu VM (as /test/run.py) or in
a scratch network namespace of a host that has it. Prints one `IPVS-RESULT <json>` line; exit 0 = pass.

Two TCP servers listen on addresses of `lo`; real Service/Endpoints dicts go through kubeproxy's model
and IPVS backend (netlink via pyroute2; the companion iptables rules are recorded, not loaded — they are
covered elsewhere), then real connections go to the cluster IPs bound on kube-ipvs0.
"""
import json
import socket
import subprocess
import sys
import threading
import time

from kubeproxy import model
from kubeproxy.ipvs_backend import IpvsBackend, NetlinkIpvs

BACKENDS = {"s1": "10.1.0.1", "s2": "10.1.0.2"}
NODE = "vm"


def serve(name, ip, port=8080):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(64)

    def loop():
        while True:
            c, _ = s.accept()
            c.sendall(name.encode())
            c.close()
    threading.Thread(target=loop, daemon=True).start()


def ask(ip, port, n):
    out = []
    for _ in range(n):
        start = time.monotonic()
        try:
            with socket.create_connection((ip, port), timeout=3) as c:
                out.append(c.recv(100).decode())
        except OSError as e:
            out.append(f"error {type(e).__name__} {time.monotonic() - start:.2f}")
    return out


def svc(name, ip, **spec):
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}], **spec}}


def eps(name, names):
    return {"metadata": {"name": name, "namespace": "default"},
            "subsets": [{"addresses": [{"ip": BACKENDS[n], "nodeName": NODE} for n in names],
                         "ports": [{"port": 8080}]}] if names else []}


def main():
    for ip in BACKENDS.values():
        subprocess.run(["ip", "addr", "add", f"{ip}/32", "dev", "lo"], check=True)
    for name, ip in BACKENDS.items():
        serve(name, ip)
    recorded = []
    runner = lambda cmd, input=None, **kw: recorded.append(cmd) or ""  # noqa: E731
    ctx = model.NodeContext(NODE, (), "10.244.0.0/16")
    services = [svc("web", "10.96.0.10"),
                svc("sticky", "10.96.0.11", sessionAffinity="ClientIP",
                    sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
                svc("empty", "10.96.0.12")]
    endpoints = {"default/web": eps("web", ["s1", "s2"]), "default/sticky": eps("sticky", ["s1", "s2"]),
                 "default/empty": eps("empty", [])}
    backend = IpvsBackend(runner=runner)
    t = time.monotonic()
    backend.sync(model.build(services, endpoints), ctx, full=True)
    result = {"first_sync_s": round(time.monotonic() - t, 3)}
    result["web"] = ask("10.96.0.10", 80, 10)
    result["sticky"] = ask("10.96.0.11", 80, 10)
    result["empty"] = ask("10.96.0.12", 80, 1)
    kernel = NetlinkIpvs().list()
    result["kernel"] = sorted(f"{k[0]} {k[1]}:{k[2]} persist={vs.persistence} -> {sorted(d)}"
                              for k, (vs, d) in kernel.items())
    ok = (set(result["web"]) == {"s1", "s2"}
          and all(result["web"][i] != result["web"][i + 1] for i in range(9))        # rr alternates
          and len(set(result["sticky"])) == 1 and result["sticky"][0] in ("s1", "s2")
          and result["empty"][0].startswith("error ConnectionRefusedError")
          and kernel[("TCP", "10.96.0.11", 80)][0].persistence == 60
          and kernel[("TCP", "10.96.0.10", 80)][1] == {("10.1.0.1", 8080), ("10.1.0.2", 8080)})

    # An endpoint goes away, a service is deleted: incremental sync.
    endpoints["default/web"] = eps("web", ["s2"])
    backend.sync(model.build(services[:2], endpoints), ctx)
    result["web_after"] = ask("10.96.0.10", 80, 4)
    kernel = NetlinkIpvs().list()
    ok = ok and result["web_after"] == ["s2"] * 4 and ("TCP", "10.96.0.12", 80) not in kernel

    # A restarted proxy (fresh backend, full sync) finds the kernel state and leaves it equal.
    IpvsBackend(runner=runner).sync(model.build(services[:1], endpoints), ctx, full=True)
    kernel = NetlinkIpvs().list()
    ok = ok and set(kernel) == {("TCP", "10.96.0.10", 80)} and ask("10.96.0.10", 80, 2) == ["s2", "s2"]
    result["after_restart"] = sorted(f"{k}" for k in kernel)
    result["iptables_commands"] = len(recorded)
    print("IPVS-RESULT " + json.dumps(result), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
