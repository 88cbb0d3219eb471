"""Endpoints: the pure shape function, then reconcile against the in-memory fake apiserver."""
from __future__ import annotations

import asyncio

import pytest

from client.events import EventRecorder
from client.factory import InformerFactory
from client.testing import FakeAPIServer
from controllers.endpoints import TRIGGER_TIME, EndpointsController, desired_subsets

NS = "ep"


def service(name="web", *, selector=None, ports=None, headless=False, publish=False, labels=None) -> dict:
    spec: dict = {"selector": {"app": "web"} if selector is None else selector,
                  "ports": ports if ports is not None else
                  [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                   {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}]}
    if not spec["selector"]:
        del spec["selector"]
    if headless:
        spec["clusterIP"] = "None"
    if publish:
        spec["publishNotReadyAddresses"] = True
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "labels": labels or {}},
            "spec": spec}


def pod(name, ip, *, ready=True, http_port=8080, labels=None, deleting=False, phase="Running", node="n1",
        hostname=None, subdomain=None) -> dict:
    ports = [{"name": "http", "containerPort": http_port}] if http_port else []
    meta: dict = {"name": name, "namespace": NS, "uid": f"uid-{name}", "labels": labels or {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    spec: dict = {"nodeName": node, "containers": [{"name": "c", "image": "x", "ports": ports}]}
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    status: dict = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def addr(name, ip, node="n1", uid=None, **extra) -> dict:
    return {"ip": ip, **extra, "nodeName": node,
            "targetRef": {"kind": "Pod", "namespace": NS, "name": name, "uid": uid or f"uid-{name}"}}


HTTP = {"name": "http", "port": 8080, "protocol": "TCP"}
METRICS = {"name": "metrics", "port": 9090, "protocol": "TCP"}

PODS = [
    pod("ready", "10.0.0.2"),
    pod("unready", "10.0.0.3", ready=False),
    pod("no-http-port", "10.0.0.4", http_port=None),
    pod("terminating", "10.0.0.5", deleting=True),
    pod("no-ip", None),
    pod("done", "10.0.0.6", phase="Succeeded"),
]


def test_ready_and_not_ready_split_and_named_ports_resolved_per_pod():
    subsets = desired_subsets(service(), PODS)
    assert subsets == [
        {"addresses": [addr("ready", "10.0.0.2")], "notReadyAddresses": [addr("unready", "10.0.0.3")],
         "ports": [HTTP, METRICS]},
        {"addresses": [addr("no-http-port", "10.0.0.4")], "ports": [METRICS]},
    ]


def test_publish_not_ready_addresses_includes_unready_and_terminating_pods():
    subsets = desired_subsets(service(publish=True), PODS)
    assert subsets[0]["addresses"] == [addr("ready", "10.0.0.2"), addr("unready", "10.0.0.3"),
                                       addr("terminating", "10.0.0.5")]
    assert "notReadyAddresses" not in subsets[0]


def test_headless_service_gets_hostnames_and_portless_subsets():
    pods = [pod("a", "10.0.0.7", hostname="a", subdomain="web"), pod("b", "10.0.0.8", hostname="b", subdomain="other")]
    assert desired_subsets(service(headless=True, ports=[]), pods) == [
        {"addresses": [addr("a", "10.0.0.7", hostname="a"), addr("b", "10.0.0.8")]}]


def test_subsets_do_not_depend_on_pod_order():
    assert desired_subsets(service(), PODS) == desired_subsets(service(), list(reversed(PODS)))


@pytest.fixture
async def ctl():
    fake = FakeAPIServer()
    client = fake.async_client()
    factory = InformerFactory(client)
    c = EndpointsController(client, factory, EventRecorder(client, "test"), clock=lambda: 1_700_000_000.0)
    c.fake = fake
    factory.start()
    await factory.wait_for_sync(5)
    yield c
    await asyncio.sleep(0.05)  # the fake watch stream can swallow a cancellation that meets a ready event
    await factory.stop()
    await client.aclose()


async def settle(ctl, predicate) -> None:
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("cache did not catch up")


def writes(fake) -> list:
    return [a for a in fake.actions if a[0] != "GET" and "/events" not in a[1]]


async def test_reconcile_creates_updates_only_on_change_and_deletes_with_the_service(ctl):
    fake = ctl.fake
    fake.seed(service(labels={"tier": "front"}))
    uid = fake.seed(pod("p1", "10.0.0.2", ready=False))["metadata"]["uid"]
    await settle(ctl, lambda: f"{NS}/p1" in ctl.pods.store and f"{NS}/web" in ctl.services.store)
    await ctl.reconcile(f"{NS}/web")
    ep = fake.objects[("endpoints", f"{NS}/web")]
    assert ep["metadata"]["labels"] == {"tier": "front"}
    assert ep["metadata"]["annotations"][TRIGGER_TIME] == "2023-11-14T22:13:20.000000Z"
    assert ep["subsets"] == [{"notReadyAddresses": [addr("p1", "10.0.0.2", uid=uid)], "ports": [HTTP, METRICS]}]

    await settle(ctl, lambda: f"{NS}/web" in ctl.endpoints.store)
    before = len(writes(fake))
    await ctl.reconcile(f"{NS}/web")
    assert len(writes(fake)) == before, "unchanged endpoints must not be written"

    await ctl.client.patch("pods", "p1", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, NS,
                           subresource="status")
    await settle(ctl, lambda: ctl.pods.store.get(f"{NS}/p1")["status"]["conditions"][0]["status"] == "True")
    await ctl.reconcile(f"{NS}/web")
    assert fake.objects[("endpoints", f"{NS}/web")]["subsets"][0]["addresses"] == [addr("p1", "10.0.0.2", uid=uid)]

    await ctl.client.delete("services", "web", NS)
    await settle(ctl, lambda: f"{NS}/web" not in ctl.services.store)
    await ctl.reconcile(f"{NS}/web")
    assert ("endpoints", f"{NS}/web") not in fake.objects


async def test_services_without_selector_keep_their_user_managed_endpoints(ctl):
    fake = ctl.fake
    fake.seed(service("manual", selector={}))
    fake.seed({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "manual", "namespace": NS},
               "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}]})
    fake.seed(pod("p1", "10.0.0.2"))
    await settle(ctl, lambda: f"{NS}/manual" in ctl.endpoints.store and f"{NS}/manual" in ctl.services.store)
    await ctl.reconcile(f"{NS}/manual")
    assert writes(fake) == []


async def test_pod_changes_queue_the_services_that_select_them(ctl):
    fake = ctl.fake
    fake.seed(service())
    fake.seed(service("other", selector={"app": "other"}))
    await settle(ctl, lambda: len(ctl.services.store) == 2)
    while len(ctl.queue):
        ctl.queue.done(await ctl.queue.get())
    fake.seed(pod("p1", "10.0.0.2"))
    await settle(ctl, lambda: len(ctl.queue) == 1)
    assert await ctl.queue.get() == f"{NS}/web"
