"""The kubelet's HTTPS API against real containers: logs and exec as the apiserver will call them.

Containers are made here with the Docker SDK and the labels `kubelet.labels` defines (as the kubelet core
would make them), for a node name no other test uses; `KubeletServer` runs in the test's event loop on a
free port with a certificate and a token file from `apiserver.pki`.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import threading
import time
from types import SimpleNamespace

import docker
import httpx
import pytest
import websockets

from apiserver.pki import ensure_serving_cert, ensure_tokens
from kubelet import labels
from kubelet.server import Demuxer, KubeletServer

IMAGE = "minik8s/busybox:1.36"
NODE = f"test-kubelet-{os.urandom(3).hex()}"
NS = "default"
V5 = "v5.channel.k8s.io"


class Containers:
    """Labelled containers as the kubelet would have made them; every one is removed at teardown."""

    def __init__(self, client: docker.DockerClient, node: str):
        self.client, self.node, self.made = client, node, []

    def run(self, pod: str, container: str, script: str, *, attempt: int = 0, wait_for: str | None = None,
            namespace: str = NS):
        c = self.client.containers.run(IMAGE, ["sh", "-c", script], detach=True, labels={
            labels.MANAGED: "true", labels.NODE: self.node, labels.POD_NAMESPACE: namespace,
            labels.POD_NAME: pod, labels.CONTAINER_NAME: container, labels.ATTEMPT: str(attempt)})
        self.made.append(c)
        if wait_for is not None:
            deadline = time.monotonic() + 10
            while wait_for.encode() not in c.logs():
                assert time.monotonic() < deadline, f"{pod}/{container} never printed {wait_for!r}"
                time.sleep(0.05)
        return c

    def remove_all(self) -> None:
        for c in self.made:
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass


@pytest.fixture(scope="module")
def containers():
    client = docker.from_env()
    made = Containers(client, NODE)
    yield made
    made.remove_all()
    client.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("kubelet-pki")
    certs = ensure_serving_cert(d, "kubelet", ["127.0.0.1"])
    tokens = ensure_tokens(d / "tokens.csv")
    return SimpleNamespace(cert=certs["cert"], key=certs["key"], ca=certs["ca"], tokens=tokens,
                           token_file=d / "tokens.csv",
                           ssl=ssl.create_default_context(cafile=str(certs["ca"])))


@pytest.fixture(scope="module")
async def kubelet(containers, pki):
    server = KubeletServer(docker=containers.client, node_name=NODE, bind_address="127.0.0.1", port=0,
                           cert_file=str(pki.cert), key_file=str(pki.key), token_file=str(pki.token_file))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
def greeter(containers):
    """A running pod that printed five lines, one to stderr."""
    containers.run("greeter", "app", "for i in 1 2 3 4; do echo line-$i; done; sleep 0.1; echo line-5 >&2; exec sleep 300",
                   wait_for="line-5")
    return "greeter"


@pytest.fixture
async def http(kubelet, pki):
    async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{kubelet.port}", verify=pki.ssl, timeout=10,
                                 headers={"Authorization": f"Bearer {pki.tokens['system:kube-apiserver-kubelet-client']}"}) as c:
        yield c


def auth(pki, identity: str = "system:kube-apiserver-kubelet-client") -> dict[str, str]:
    return {"Authorization": f"Bearer {pki.tokens[identity]}"}


async def exec_session(url: str, headers: dict[str, str], ctx: ssl.SSLContext, send: list[bytes] = (),
                       until: bytes | None = None, then: list[bytes] = ()) -> SimpleNamespace:
    """Run one exec over the channel protocol; `then` frames are sent once stdout shows `until`."""
    out = {1: b"", 2: b""}
    result = SimpleNamespace(stdout=b"", stderr=b"", status=None, close_code=None, subprotocol=None)
    async with asyncio.timeout(20):
        async with websockets.connect(url, subprotocols=[V5], additional_headers=headers, ssl=ctx) as ws:
            result.subprotocol = ws.subprotocol
            for frame in send:
                await ws.send(frame)
            async for msg in ws:
                channel, payload = msg[0], msg[1:]
                if channel == 3:
                    result.status = json.loads(payload)
                else:
                    out[channel] += payload
                if until is not None and until in out[1]:
                    until = None
                    for frame in then:
                        await ws.send(frame)
            result.close_code = ws.close_code
    result.stdout, result.stderr = out[1], out[2]
    return result


def exec_url(kubelet, pod: str, container: str, *command: str, **flags: int) -> str:
    query = "&".join([f"command={c}" for c in command] + [f"{k}={v}" for k, v in flags.items()])
    return f"wss://127.0.0.1:{kubelet.port}/exec/{NS}/{pod}/{container}?{query}"


# -- framing -----------------------------------------------------------------------------------------------

def test_demuxer_reassembles_split_docker_frames():
    stream = b"\x01\x00\x00\x00\x00\x00\x00\x03out" + b"\x02\x00\x00\x00\x00\x00\x00\x04err\n"
    d = Demuxer()
    pieces = []
    for i in range(len(stream)):
        pieces += d.feed(stream[i:i + 1])
    assert pieces == [(1, b"out"), (2, b"err\n")]


# -- auth --------------------------------------------------------------------------------------------------

async def test_healthz_needs_no_token(kubelet, pki):
    async with httpx.AsyncClient(verify=pki.ssl) as c:
        r = await c.get(f"https://127.0.0.1:{kubelet.port}/healthz")
    assert r.status_code == 200 and r.text == "ok"


async def test_logs_without_token_is_401_and_unprivileged_identity_403(kubelet, pki, greeter):
    url = f"https://127.0.0.1:{kubelet.port}/containerLogs/{NS}/{greeter}/app"
    async with httpx.AsyncClient(verify=pki.ssl) as c:
        r = await c.get(url)
        assert r.status_code == 401 and r.json()["reason"] == "Unauthorized" and r.json()["kind"] == "Status"
        r = await c.get(url, headers={"Authorization": "Bearer not-a-token"})
        assert r.status_code == 401
        r = await c.get(url, headers=auth(pki, "system:kube-proxy"))
        assert r.status_code == 403 and r.json()["reason"] == "Forbidden"
        r = await c.get(url, headers=auth(pki, "admin"))     # system:masters
        assert r.status_code == 200


async def test_exec_websocket_without_token_is_refused(kubelet, pki, greeter):
    with pytest.raises(websockets.InvalidStatus) as e:
        await exec_session(exec_url(kubelet, greeter, "app", "echo", "x", stdout=1), {}, pki.ssl)
    assert e.value.response.status_code == 401
    with pytest.raises(websockets.InvalidStatus) as e:
        await exec_session(exec_url(kubelet, greeter, "app", "echo", "x", stdout=1), auth(pki, "system:kube-proxy"), pki.ssl)
    assert e.value.response.status_code == 403


# -- logs --------------------------------------------------------------------------------------------------

async def test_logs_plain_tail_limit_and_timestamps(http, greeter):
    r = await http.get(f"/containerLogs/{NS}/{greeter}/app")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.text == "".join(f"line-{i}\n" for i in range(1, 6))

    r = await http.get(f"/containerLogs/{NS}/{greeter}/app", params={"tailLines": 2})
    assert r.text == "line-4\nline-5\n"

    r = await http.get(f"/containerLogs/{NS}/{greeter}/app", params={"limitBytes": 9})
    assert r.text == "line-1\nli"

    r = await http.get(f"/containerLogs/{NS}/{greeter}/app", params={"timestamps": "true", "tailLines": 1})
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z line-5\n", r.text), r.text


async def test_logs_since_seconds_only_recent_lines(http, containers):
    containers.run("since", "app", "echo early; sleep 2; echo late; exec sleep 300", wait_for="late")
    r = await http.get(f"/containerLogs/{NS}/since/app", params={"sinceSeconds": 1})
    assert r.text == "late\n"
    r = await http.get(f"/containerLogs/{NS}/since/app", params={"sinceSeconds": 60})
    assert r.text == "early\nlate\n"


async def test_logs_previous_is_the_attempt_before(http, containers):
    containers.run("restarted", "app", "echo first-run", attempt=0, wait_for="first-run")
    containers.run("restarted", "app", "echo second-run; exec sleep 300", attempt=1, wait_for="second-run")
    assert (await http.get(f"/containerLogs/{NS}/restarted/app")).text == "second-run\n"
    assert (await http.get(f"/containerLogs/{NS}/restarted/app", params={"previous": "true"})).text == "first-run\n"


async def test_logs_previous_missing_and_unknown_container_are_404(http, greeter):
    r = await http.get(f"/containerLogs/{NS}/{greeter}/app", params={"previous": "true"})
    assert r.status_code == 404
    assert r.json()["message"] == f'previous terminated container "app" in pod "{greeter}" not found'
    r = await http.get(f"/containerLogs/{NS}/{greeter}/nope")
    assert r.status_code == 404 and r.json()["reason"] == "NotFound"
    r = await http.get(f"/containerLogs/{NS}/{greeter}/app", params={"tailLines": "x"})
    assert r.status_code == 400


async def test_logs_follow_streams_new_lines_as_printed(http, containers):
    containers.run("ticker", "app", "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done", wait_for="tick-0")
    seen: list[tuple[float, str]] = []
    async with asyncio.timeout(10):
        async with http.stream("GET", f"/containerLogs/{NS}/ticker/app", params={"follow": "true"}) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                seen.append((time.monotonic(), line))
                if len(seen) >= 12:
                    break
    lines = [line for _, line in seen]
    assert lines == [f"tick-{i}" for i in range(12)]
    # Lines arrived as they were printed, not in one batch at the end.
    assert seen[-1][0] - seen[3][0] > 1.0


# -- exec --------------------------------------------------------------------------------------------------

async def test_exec_one_shot_separates_stdout_and_stderr(kubelet, pki, greeter):
    url = exec_url(kubelet, greeter, "app", "sh", "-c", "echo%20hello;echo%20oops%20%3E%262", stdout=1, stderr=1)
    res = await exec_session(url, auth(pki), pki.ssl)
    assert res.subprotocol == V5
    assert (res.stdout, res.stderr) == (b"hello\n", b"oops\n")
    assert res.status == {"metadata": {}, "status": "Success"}
    assert res.close_code == 1000


async def test_exec_non_zero_exit_code_is_reported_on_the_error_channel(kubelet, pki, greeter):
    res = await exec_session(exec_url(kubelet, greeter, "app", "sh", "-c", "exit%203", stdout=1, stderr=1),
                             auth(pki), pki.ssl)
    assert res.status["status"] == "Failure" and res.status["reason"] == "NonZeroExitCode"
    assert res.status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert res.status["message"].startswith("command terminated with non-zero exit code")


async def test_exec_stdin_and_v5_close_is_eof(kubelet, pki, greeter):
    res = await exec_session(exec_url(kubelet, greeter, "app", "cat", stdin=1, stdout=1, stderr=1), auth(pki), pki.ssl,
                             send=[b"\x00hello stdin\n", b"\x00second\n", bytes([255, 0])])
    assert res.stdout == b"hello stdin\nsecond\n"
    assert res.status["status"] == "Success"


async def test_exec_interactive_tty_with_resize(kubelet, pki, greeter):
    resize = b"\x04" + json.dumps({"Width": 123, "Height": 45}).encode()
    res = await exec_session(exec_url(kubelet, greeter, "app", "sh", stdin=1, stdout=1, tty=1), auth(pki), pki.ssl,
                             send=[resize, b"\x00stty size\n"], until=b"45 123",
                             then=[b"\x00exit 4\n"])
    assert b"45 123" in res.stdout
    assert res.stderr == b""                       # a TTY has one output stream
    assert res.status["details"]["causes"][0]["message"] == "4"


async def test_exec_unknown_container_or_no_command_is_refused(kubelet, pki, greeter):
    with pytest.raises(websockets.InvalidStatus) as e:
        await exec_session(exec_url(kubelet, greeter, "nope", "true", stdout=1), auth(pki), pki.ssl)
    assert e.value.response.status_code == 404
    assert b"not found" in e.value.response.body
    with pytest.raises(websockets.InvalidStatus) as e:
        await exec_session(exec_url(kubelet, greeter, "app", stdout=1), auth(pki), pki.ssl)
    assert e.value.response.status_code == 400


async def test_exec_plain_get_asks_for_an_upgrade(http, greeter):
    r = await http.get(f"/exec/{NS}/{greeter}/app", params={"command": "true", "stdout": 1})
    assert r.status_code == 400 and r.json()["message"] == "Upgrade request required"


async def test_a_follower_leaving_stops_the_docker_log_stream(http, containers):
    containers.run("chatty", "app", "while true; do echo chat; sleep 0.1; done", wait_for="chat")
    async with http.stream("GET", f"/containerLogs/{NS}/chatty/app", params={"follow": "1"}) as r:
        async for _ in r.aiter_lines():
            break
    assert await log_threads_gone()


async def log_threads_gone(timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while any(t.name.startswith("logs-") for t in threading.enumerate()):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_webhook_authentication_and_authorization_ask_the_apiserver(containers, pki, greeter, apiserver):
    """A node without the cluster's token file: tokens go to the apiserver in TokenReviews and the caller's
    rights on nodes/proxy of this node in SubjectAccessReviews (the real apiserver, the node's own identity)."""
    from apiserver.pki import NODES_GROUP, node_identity
    from client.kubeconfig import Config
    from client.rest import AsyncClient

    token = apiserver.add_identity(node_identity(NODE), [NODES_GROUP])
    api = AsyncClient(Config(server=apiserver.url, token=token, ca_file=str(apiserver.ca)))
    server = KubeletServer(docker=containers.client, node_name=NODE, bind_address="127.0.0.1", port=0,
                           cert_file=str(pki.cert), key_file=str(pki.key), token_file=None, api=api)
    await server.start()
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    role = f"kubelet-logs-{os.urandom(2).hex()}"
    with apiserver.http() as admin:
        # bob may read this node's logs through nodes/proxy; jane may not.
        admin.post(f"{rbac}/clusterroles", json={"metadata": {"name": role}, "rules": [
            {"apiGroups": [""], "resources": ["nodes/proxy"], "resourceNames": [NODE], "verbs": ["get"]}]})
        admin.post(f"{rbac}/clusterrolebindings", json={"metadata": {"name": role}, "subjects": [
            {"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}],
            "roleRef": {"kind": "ClusterRole", "name": role, "apiGroup": "rbac.authorization.k8s.io"}})
    try:
        url = f"https://127.0.0.1:{server.port}/containerLogs/{NS}/{greeter}/app"
        bearer = lambda who: {"Authorization": f"Bearer {apiserver.tokens[who]}"}  # noqa: E731
        async with httpx.AsyncClient(verify=pki.ssl, timeout=10) as c:
            r = await c.get(url, headers=bearer("bob"))
            assert r.status_code == 200 and "line-1" in r.text
            r = await c.get(url, headers=bearer("jane"))
            assert r.status_code == 403
            assert r.json()["message"] == "Forbidden (user=jane, verb=get, resource=nodes, subresource=proxy)"
            assert (await c.get(url, headers={"Authorization": "Bearer nope"})).status_code == 401
            # The apiserver's own kubelet client (system:masters) and the admin pass as well.
            assert (await c.get(url, headers=bearer("system:kube-apiserver-kubelet-client"))).status_code == 200
            r = await c.get(f"https://127.0.0.1:{server.port}/metrics/resource", headers=bearer("bob"))
            assert r.status_code == 403 and "subresource=metrics" in r.json()["message"]   # not nodes/metrics
    finally:
        await server.stop()
        await api.aclose()
        with apiserver.http() as admin:
            admin.delete(f"{rbac}/clusterrolebindings/{role}")
            admin.delete(f"{rbac}/clusterroles/{role}")
