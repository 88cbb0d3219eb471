"""`pods/log` and `pods/exec` through a real apiserver to a real kubelet API and real containers.

The apiserver runs as its own process with `--kubelet-certificate-authority` set to the CA that signed the
kubelet's certificate, sharing the token file so its `system:kube-apiserver-kubelet-client` token is one
the kubelet accepts. The kubelet API runs in the test's event loop; the Node and Pod objects point at it,
and the pod's containers are made here with the kubelet's Docker labels.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
from types import SimpleNamespace

import docker
import pytest
import websockets

from apiserver.pki import ensure_serving_cert
from kubelet import labels
from kubelet.server import KubeletServer
from tests.conftest import start_apiserver

IMAGE = "minik8s/busybox:1.36"
NODE = f"test-proxy-{os.urandom(3).hex()}"
V5 = "v5.channel.k8s.io"


@pytest.fixture(scope="module")
def docker_client():
    client = docker.from_env()
    made: list = []
    client.test_containers = made
    yield client
    for c in made:
        try:
            c.remove(force=True)
        except docker.errors.NotFound:
            pass
    client.close()


def run_container(client, namespace: str, pod: str, container: str, script: str, wait_for: str) -> None:
    c = client.containers.run(IMAGE, ["sh", "-c", script], detach=True, labels={
        labels.MANAGED: "true", labels.NODE: NODE, labels.POD_NAMESPACE: namespace, labels.POD_NAME: pod,
        labels.CONTAINER_NAME: container, labels.ATTEMPT: "0"})
    client.test_containers.append(c)
    deadline = time.monotonic() + 10
    while wait_for.encode() not in c.logs():
        assert time.monotonic() < deadline, f"{pod}/{container} never printed {wait_for!r}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
async def cluster(etcd, tmp_path_factory, docker_client):
    """An apiserver that trusts the kubelet CA, a kubelet API for NODE, and the Node object pointing at it."""
    d = tmp_path_factory.mktemp("proxy")
    certs = ensure_serving_cert(d / "pki", "kubelet", ["127.0.0.1"])
    server = start_apiserver(etcd, d, "--kubelet-certificate-authority", str(certs["ca"]), "--kubelet-timeout", "2")
    kubelet = KubeletServer(docker=docker_client, node_name=NODE, bind_address="127.0.0.1", port=0,
                            cert_file=str(certs["cert"]), key_file=str(certs["key"]), token_file=str(d / "tokens.csv"))
    await kubelet.start()
    with server.http() as http:
        make_node(http, NODE, kubelet.port)
    yield SimpleNamespace(server=server, kubelet=kubelet, dir=d, docker=docker_client)
    await kubelet.stop()
    server.proc.terminate()
    server.proc.wait(10)


def make_node(http, name: str, port: int) -> None:
    assert http.post("/api/v1/nodes", json={"metadata": {"name": name}}).status_code == 201
    r = http.patch(f"/api/v1/nodes/{name}/status", headers={"Content-Type": "application/merge-patch+json"},
                   json={"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                                  {"type": "Hostname", "address": name}],
                                    "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}})
    assert r.status_code == 200, r.text


def make_pod(http, namespace: str, name: str, node: str | None, containers: tuple[str, ...] = ("app",)) -> None:
    spec = {"containers": [{"name": c, "image": IMAGE} for c in containers]}
    if node:
        spec["nodeName"] = node
    r = http.post(f"/api/v1/namespaces/{namespace}/pods", json={"metadata": {"name": name}, "spec": spec})
    assert r.status_code == 201, r.text


@pytest.fixture
def ns(cluster):
    name = f"proxy-{os.urandom(3).hex()}"
    with cluster.server.http() as http:
        assert http.post("/api/v1/namespaces", json={"metadata": {"name": name}}).status_code == 201
    return name


@pytest.fixture
def greeter(cluster, ns):
    """A pod on NODE whose one container printed three lines and keeps running."""
    run_container(cluster.docker, ns, "greeter", "app", "echo one; echo two; echo three; exec sleep 300", "three")
    with cluster.server.http() as http:
        make_pod(http, ns, "greeter", NODE)
    return "greeter"


def exec_url(cluster, ns: str, pod: str, *command: str, **params) -> str:
    query = urllib.parse.urlencode([("command", c) for c in command] + list(params.items()))
    return f"{cluster.server.url.replace('https', 'wss')}/api/v1/namespaces/{ns}/pods/{pod}/exec?{query}"


async def exec_session(cluster, url: str, *, token: str | None = "admin", send: list[bytes] = (),
                       until: bytes | None = None, then: list[bytes] = ()) -> SimpleNamespace:
    headers = {"Authorization": f"Bearer {cluster.server.tokens[token]}"} if token else {}
    ctx = ssl.create_default_context(cafile=str(cluster.server.ca))
    out = {1: b"", 2: b""}
    res = SimpleNamespace(status=None, close_code=None)
    async with asyncio.timeout(20):
        async with websockets.connect(url, subprotocols=[V5], additional_headers=headers, ssl=ctx) as ws:
            assert ws.subprotocol == V5
            for frame in send:
                await ws.send(frame)
            async for msg in ws:
                if msg[0] == 3:
                    res.status = json.loads(msg[1:])
                else:
                    out[msg[0]] += msg[1:]
                if until is not None and until in out[1]:
                    until = None
                    for frame in then:
                        await ws.send(frame)
            res.close_code = ws.close_code
    res.stdout, res.stderr = out[1], out[2]
    return res


# -- logs --------------------------------------------------------------------------------------------------

async def test_logs_through_the_apiserver(cluster, ns, greeter):
    async with cluster.server.ahttp() as c:
        r = await c.get(f"/api/v1/namespaces/{ns}/pods/{greeter}/log")
        assert r.status_code == 200 and r.text == "one\ntwo\nthree\n"
        r = await c.get(f"/api/v1/namespaces/{ns}/pods/{greeter}/log", params={"container": "app", "tailLines": 1})
        assert r.text == "three\n"
        r = await c.get(f"/api/v1/namespaces/{ns}/pods/{greeter}/log", params={"timestamps": "true"})
        assert r.text.splitlines()[0].endswith("Z one")


async def test_logs_follow_streams_through(cluster, ns):
    run_container(cluster.docker, ns, "ticker", "app", "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done",
                  "tick-0")
    with cluster.server.http() as http:
        make_pod(http, ns, "ticker", NODE)
    lines: list[tuple[float, str]] = []
    async with asyncio.timeout(10), cluster.server.ahttp() as c:
        async with c.stream("GET", f"/api/v1/namespaces/{ns}/pods/ticker/log", params={"follow": "true"}) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                lines.append((time.monotonic(), line))
                if len(lines) == 10:
                    break
    assert [x for _, x in lines] == [f"tick-{i}" for i in range(10)]
    assert lines[-1][0] - lines[2][0] > 1.0


async def test_logs_errors_are_status_objects(cluster, ns, greeter):
    async with cluster.server.ahttp() as c:
        r = await c.get(f"/api/v1/namespaces/{ns}/pods/missing/log")
        assert r.status_code == 404 and r.json()["reason"] == "NotFound"
        r = await c.get(f"/api/v1/namespaces/{ns}/pods/{greeter}/log", params={"container": "nope"})
        assert r.status_code == 400 and r.json()["kind"] == "Status"
        r = await c.get(f"/api/v1/namespaces/{ns}/pods/{greeter}/log", params={"previous": "true"})
        assert r.status_code == 404 and "previous terminated container" in r.json()["message"]
        r = await c.get(f"/api/v1/namespaces/{ns}/pods/{greeter}/log", params={"tailLines": "-1"})
        assert r.status_code == 400


async def test_logs_of_a_pod_whose_container_is_gone_is_404(cluster, ns):
    with cluster.server.http() as http:
        make_pod(http, ns, "ghost", NODE)
    async with cluster.server.ahttp() as c:
        r = await c.get(f"/api/v1/namespaces/{ns}/pods/ghost/log")
    assert r.status_code == 404 and 'container "app" in pod' in r.json()["message"]


async def test_logs_need_a_container_name_when_the_pod_has_several(cluster, ns):
    with cluster.server.http() as http:
        make_pod(http, ns, "duo", NODE, containers=("web", "sidecar"))
        r = http.get(f"/api/v1/namespaces/{ns}/pods/duo/log")
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest"
    assert r.json()["message"] == "a container name must be specified for pod duo, choose one of: [web sidecar]"


async def test_logs_of_an_unscheduled_pod_is_400(cluster, ns):
    with cluster.server.http() as http:
        make_pod(http, ns, "pending", None)
        r = http.get(f"/api/v1/namespaces/{ns}/pods/pending/log")
        assert r.status_code == 400 and r.json()["message"] == "pod pending does not have a host assigned"
        r = http.get(f"/api/v1/namespaces/{ns}/pods/pending/log", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401


# -- exec --------------------------------------------------------------------------------------------------

async def test_exec_one_shot_and_exit_codes(cluster, ns, greeter):
    res = await exec_session(cluster, exec_url(cluster, ns, greeter, "sh", "-c", "echo out; echo err >&2",
                                               stdout="true", stderr="true"))
    assert (res.stdout, res.stderr) == (b"out\n", b"err\n")
    assert res.status == {"metadata": {}, "status": "Success"} and res.close_code == 1000

    res = await exec_session(cluster, exec_url(cluster, ns, greeter, "sh", "-c", "exit 3", stdout="true"))
    assert res.status["reason"] == "NonZeroExitCode"
    assert res.status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


async def test_exec_interactive_tty_with_stdin_and_resize(cluster, ns, greeter):
    resize = b"\x04" + json.dumps({"Width": 101, "Height": 33}).encode()
    res = await exec_session(cluster, exec_url(cluster, ns, greeter, "sh", stdin="true", stdout="true", tty="true"),
                             send=[resize, b"\x00stty size\n"], until=b"33 101", then=[b"\x00exit\n"])
    assert b"33 101" in res.stdout
    assert res.status["status"] == "Success"


async def test_exec_stdin_eof_via_close_frame(cluster, ns, greeter):
    res = await exec_session(cluster, exec_url(cluster, ns, greeter, "wc", "-l", stdin="true", stdout="true"),
                             send=[b"\x00a\nb\n", bytes([255, 0])])
    assert res.stdout.strip() == b"2" and res.status["status"] == "Success"


async def test_exec_refusals(cluster, ns, greeter):
    url = exec_url(cluster, ns, greeter, "true", stdout="true")
    with pytest.raises(websockets.InvalidStatus) as e:
        await exec_session(cluster, url, token=None)
    assert e.value.response.status_code == 401
    with pytest.raises(websockets.InvalidStatus) as e:
        await exec_session(cluster, exec_url(cluster, ns, greeter, "true", stdout="true", container="nope"))
    assert e.value.response.status_code == 400
    with pytest.raises(websockets.InvalidStatus) as e:
        await exec_session(cluster, exec_url(cluster, ns, "missing", "true", stdout="true"))
    assert e.value.response.status_code == 404
    with cluster.server.http() as http:
        make_pod(http, ns, "ghost", NODE)
        r = http.post(f"/api/v1/namespaces/{ns}/pods/{greeter}/exec", params={"command": "true"})
        assert r.status_code == 400 and r.json()["message"] == "Upgrade request required"
    with pytest.raises(websockets.InvalidStatus) as e:          # pod exists, its container does not
        await exec_session(cluster, exec_url(cluster, ns, "ghost", "true", stdout="true"))
    assert e.value.response.status_code == 404
    assert b'container \\"app\\" in pod' in e.value.response.body


# -- unreachable or untrusted kubelets ---------------------------------------------------------------------

@pytest.fixture
def pod_on_node(cluster, ns):
    """Make a Node whose kubelet endpoint is `port` and a pod bound to it; returns the pod name."""
    def make(port: int) -> str:
        node = f"{NODE}-{os.urandom(2).hex()}"
        with cluster.server.http() as http:
            make_node(http, node, port)
            make_pod(http, ns, "stranded", node)
        return "stranded"
    return make


async def assert_fails_fast(cluster, ns: str, pod: str, codes: set[int], budget: float) -> list[str]:
    messages = []
    t0 = time.monotonic()
    async with cluster.server.ahttp() as c:
        r = await c.get(f"/api/v1/namespaces/{ns}/pods/{pod}/log")
    assert r.status_code in codes and r.json()["kind"] == "Status", r.text
    messages.append(r.json()["message"])
    with pytest.raises(websockets.InvalidStatus) as e:
        await exec_session(cluster, exec_url(cluster, ns, pod, "true", stdout="true"))
    assert e.value.response.status_code in codes
    messages.append(json.loads(e.value.response.body)["message"])
    assert time.monotonic() - t0 < budget
    return messages


async def test_kubelet_down_is_503_quickly(cluster, ns, pod_on_node):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # closed again: nothing listens there
    messages = await assert_fails_fast(cluster, ns, pod_on_node(port), {503}, budget=3)
    assert all("error trying to reach the kubelet on node" in m for m in messages), messages


async def test_kubelet_that_never_answers_times_out(cluster, ns, pod_on_node):
    with socket.socket() as s:             # accepts TCP connections (backlog) but never speaks TLS
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        await assert_fails_fast(cluster, ns, pod_on_node(s.getsockname()[1]), {503}, budget=8)


async def test_kubelet_with_an_untrusted_certificate_is_502(cluster, ns, pod_on_node, tmp_path):
    other = ensure_serving_cert(tmp_path / "other-ca", "kubelet", ["127.0.0.1"])
    rogue = KubeletServer(docker=cluster.docker, node_name=NODE, bind_address="127.0.0.1", port=0,
                          cert_file=str(other["cert"]), key_file=str(other["key"]),
                          token_file=str(cluster.dir / "tokens.csv"))
    await rogue.start()
    try:
        messages = await assert_fails_fast(cluster, ns, pod_on_node(rogue.port), {502}, budget=5)
        assert all("certificate" in m.lower() for m in messages), messages
    finally:
        await rogue.stop()


async def test_a_follower_leaving_the_apiserver_stops_the_kubelet_stream(cluster, ns):
    run_container(cluster.docker, ns, "chatty", "app", "while true; do echo chat; sleep 0.1; done", "chat")
    with cluster.server.http() as http:
        make_pod(http, ns, "chatty", NODE)
    async with cluster.server.ahttp() as c:
        async with c.stream("GET", f"/api/v1/namespaces/{ns}/pods/chatty/log", params={"follow": "true"}) as r:
            async for _ in r.aiter_lines():
                break
            assert any(t.name.startswith("logs-") for t in threading.enumerate())
    deadline = time.monotonic() + 5
    while any(t.name.startswith("logs-") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the kubelet kept streaming after the client left"
        await asyncio.sleep(0.05)


async def test_exec_token_in_the_bearer_subprotocol(cluster, ns, greeter):
    token = base64.urlsafe_b64encode(cluster.server.admin_token.encode()).decode().rstrip("=")
    ctx = ssl.create_default_context(cafile=str(cluster.server.ca))
    url = exec_url(cluster, ns, greeter, "echo", "hi", stdout="true")
    async with asyncio.timeout(10):
        async with websockets.connect(url, ssl=ctx, subprotocols=[V5, f"base64url.bearer.authorization.k8s.io.{token}"]) as ws:
            assert ws.subprotocol == V5
            frames = [m async for m in ws]
    assert frames[0] == b"\x01hi\n" and json.loads(frames[-1][1:])["status"] == "Success"
