"""The proxy as a process would run it: informers on a real apiserver, the SyncRunner, a backend that
writes into the scratch node namespace of `proxy_net`, connections through the result. Also the LB
allocator under its Lease, and the `minik8s proxy` command itself inside the node namespace."""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

from client.kubeconfig import Config, write_kubeconfig
from client.rest import AsyncClient
from kubeproxy import lballoc
from kubeproxy.nftables_backend import NftablesBackend
from kubeproxy.proxier import Proxier
from kubeproxy.server import allocate_while_leader
from tests.kubeproxy.conftest import BACKENDS, ROOT

NODE = "n1"


def config(apiserver) -> Config:
    return Config(server=apiserver.url, token=apiserver.tokens["admin"], ca_file=str(apiserver.ca))


async def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def service(name, **spec):
    return {"metadata": {"name": name}, "spec": {"ports": [{"port": 80}], **spec}}


def endpoints(name, names):
    return {"metadata": {"name": name}, "subsets": [{"addresses": [{"ip": BACKENDS[b], "nodeName": NODE}
                                                                   for b in names], "ports": [{"port": 8080}]}]}


async def test_proxier_programs_changes_from_the_apiserver(apiserver, namespace, proxy_net):
    async with AsyncClient(config(apiserver)) as client:
        svc = await client.create("services", service("web"), namespace)
        await client.create("endpoints", endpoints("web", ["b1", "b2"]), namespace)
        backend = NftablesBackend(runner=proxy_net.runner)
        proxier = Proxier(client, backend, node_name=NODE, cluster_cidr="10.244.0.0/16",
                          service_cidr="10.96.0.0/12", min_sync_period=0.1, sync_period=30)
        task = asyncio.create_task(proxier.run())
        try:
            await asyncio.wait_for(proxier.synced.wait(), 15)
            ip = svc["spec"]["clusterIP"]
            answers = await asyncio.to_thread(proxy_net.connect, proxy_net.node, ip, 80, 30)
            assert {a.split()[0] for a in answers} == {"b1", "b2"}, answers

            # A burst of changes coalesces into few syncs and ends in the last state (which no earlier
            # step of the burst shares, so seeing it applied means the burst is over).
            syncs = proxier.runner.syncs
            for names in (["b1"], ["b1", "b2"], ["b1"], ["b2"]):
                await client.update("endpoints", {**endpoints("web", names), "metadata": {
                    **(await client.get("endpoints", "web", namespace))["metadata"]}})
            # Match the namespace too: the apiserver is shared, other tests' namespaces have a "web" as well.
            await wait_for(lambda: any(sp.namespace == namespace and sp.name == "web"
                                       and [e.ip for e in sp.endpoints] == [BACKENDS["b2"]] for sp in proxier.applied))
            assert proxier.runner.syncs - syncs <= 4
            answers = await asyncio.to_thread(proxy_net.connect, proxy_net.node, ip, 80, 10)
            assert {a.split()[0] for a in answers} == {"b2"}

            await client.delete("endpoints", "web", namespace)
            await wait_for(lambda: any(sp.namespace == namespace and sp.name == "web" and not sp.endpoints
                                       for sp in proxier.applied))
            [answer] = await asyncio.to_thread(proxy_net.connect, proxy_net.node, ip, 80)
            assert answer.startswith("error ConnectionRefusedError"), answer
            ok, body = proxier.health()
            assert ok and body["mode"] == "nftables"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def test_lb_plan_allocates_lowest_free_address_and_clears_non_lb():
    services = [
        {"metadata": {"name": "a", "namespace": "x", "creationTimestamp": "1"}, "spec": {"type": "LoadBalancer"},
         "status": {"loadBalancer": {"ingress": [{"ip": "10.77.1.1"}]}}},
        {"metadata": {"name": "b", "namespace": "x", "creationTimestamp": "2"}, "spec": {"type": "LoadBalancer"}},
        {"metadata": {"name": "c", "namespace": "x", "creationTimestamp": "3"},
         "spec": {"type": "LoadBalancer", "loadBalancerIP": "10.77.1.9"}},
        {"metadata": {"name": "d", "namespace": "x", "creationTimestamp": "4"},
         "spec": {"type": "LoadBalancer", "loadBalancerClass": "other.io/lb"}},
        {"metadata": {"name": "e", "namespace": "x", "creationTimestamp": "5"}, "spec": {"type": "ClusterIP"},
         "status": {"loadBalancer": {"ingress": [{"ip": "10.77.1.4"}]}}},
    ]
    assert lballoc.plan(services, "10.77.1.0/24") == [("x", "b", "10.77.1.2"), ("x", "c", "10.77.1.9"),
                                                      ("x", "e", None)]


async def test_lb_allocator_writes_status_under_the_lease_and_the_ip_is_programmed(apiserver, namespace, proxy_net):
    async with AsyncClient(config(apiserver)) as client:
        await client.create("services", service("lb", type="LoadBalancer"), namespace)
        await client.create("endpoints", endpoints("lb", ["b1"]), namespace)
        proxier = Proxier(client, NftablesBackend(runner=proxy_net.runner), node_name=NODE,
                          cluster_cidr="10.244.0.0/16", min_sync_period=0.1, sync_period=30)
        allocator = lballoc.LBAllocator(client, proxier.services, "10.77.1.64/26")
        tasks = [asyncio.create_task(proxier.run()),
                 asyncio.create_task(allocate_while_leader(client, allocator, "test-proxy"))]
        try:
            def lb_ip():
                return next((ip for sp in proxier.applied if sp.name == "lb" and sp.namespace == namespace
                             for ip in sp.lb_ips), None)
            await wait_for(lambda: lb_ip() is not None, 30)
            svc = await client.get("services", "lb", namespace)
            assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": lb_ip(), "ipMode": "VIP"}]
            lease = await client.get("leases.coordination.k8s.io", lballoc.LEASE_NAME, lballoc.LEASE_NAMESPACE)
            assert lease["spec"]["holderIdentity"] == "test-proxy"
            answers = await asyncio.to_thread(proxy_net.connect, proxy_net.client, lb_ip(), 80, 5)
            assert {a.split()[0] for a in answers} == {"b1"}, answers
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.delete("services", "lb", namespace)


def test_minik8s_proxy_command_runs_inside_a_node_namespace(apiserver, namespace, proxy_net, tmp_path):
    """`nsenter --net=/run/netns/<node> minik8s proxy ...`, as the lab runs it. The apiserver listens on the
    root namespace's loopback, so a small relay (a Unix socket needs no route) carries the connection."""
    relay_sock = tmp_path / "api.sock"
    port = int(apiserver.url.rsplit(":", 1)[1])
    relay = subprocess.Popen([sys.executable, "-c", RELAY, str(relay_sock), str(port), proxy_net.node], cwd=ROOT)
    kubeconfig = tmp_path / "proxy.kubeconfig"
    write_kubeconfig(kubeconfig, server=f"https://127.0.0.1:{port}", ca_pem=apiserver.ca.read_bytes(),
                     token=apiserver.tokens["admin"], user="proxy")
    with httpx_client(apiserver) as http:
        svc = http.post(f"/api/v1/namespaces/{namespace}/services", json=service("cmd")).json()
        http.post(f"/api/v1/namespaces/{namespace}/endpoints", json=endpoints("cmd", ["b1", "b2"]))
    proc = None
    try:
        deadline = time.monotonic() + 10
        while not relay_sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{proxy_net.node}", sys.executable, "-m", "cli.main",
                                 "proxy", "--kubeconfig", str(kubeconfig), "--hostname-override", NODE,
                                 "--proxy-mode", "iptables", "--min-sync-period", "0.1", "--healthz-port", "10256"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ip = svc["spec"]["clusterIP"]
        deadline = time.monotonic() + 30
        answers: list[str] = []
        while time.monotonic() < deadline:
            answers = proxy_net.connect(proxy_net.node, ip, 80, 10)
            if {a.split()[0] for a in answers} == {"b1", "b2"}:
                break
            time.sleep(0.3)
        assert {a.split()[0] for a in answers} == {"b1", "b2"}, answers
        health = json.loads(proxy_net.exec(proxy_net.node, sys.executable, "-c",
                                           "import urllib.request;print(urllib.request.urlopen("
                                           "'http://127.0.0.1:10256/healthz').read().decode())"))
        assert health["mode"] == "iptables" and health["synced"]
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=15)[0]
            assert proc.returncode == 0, out[-3000:]
        relay.kill()
        relay.wait()


def httpx_client(apiserver):
    return apiserver.http()


# Root side: a Unix socket forwarding to the apiserver's loopback port. Node side: a listener on the node
# namespace's 127.0.0.1:<same port> forwarding to that socket (a thread that entered the namespace).
RELAY = r'''
import asyncio, os, sys, threading
sock_path, port, netns = sys.argv[1], int(sys.argv[2]), sys.argv[3]

async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data); await w.drain()
    finally:
        w.close()

async def to_api(r, w):
    r2, w2 = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.gather(pipe(r, w2), pipe(r2, w), return_exceptions=True)

async def to_sock(r, w):
    r2, w2 = await asyncio.open_unix_connection(sock_path)
    await asyncio.gather(pipe(r, w2), pipe(r2, w), return_exceptions=True)

def node_side():
    from pyroute2.netns import setns
    setns(netns)      # this thread only: the Unix-socket side stays in the root namespace
    async def main():
        server = await asyncio.start_server(to_sock, "127.0.0.1", port)
        await server.serve_forever()
    asyncio.run(main())

async def main():
    server = await asyncio.start_unix_server(to_api, sock_path)
    threading.Thread(target=node_side, daemon=True).start()
    await server.serve_forever()
asyncio.run(main())
'''
