"""Root CA publisher against the in-memory fake apiserver."""
from __future__ import annotations

import asyncio

from client.events import EventRecorder
from client.factory import InformerFactory
from client.testing import FakeAPIServer
from controllers.rootcacert import NAME, RootCACertPublisher

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def ns(name, terminating=False):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
            "status": {"phase": "Terminating" if terminating else "Active"}}


async def test_publishes_restores_and_leaves_terminating_namespaces_alone(tmp_path):
    (tmp_path / "ca.crt").write_text(CA)
    fake = FakeAPIServer()
    fake.seed(ns("fresh"))
    fake.seed(ns("leaving", terminating=True))
    fake.seed(ns("tampered"))
    fake.seed({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": "tampered"},
               "data": {"ca.crt": "wrong"}})
    client = fake.async_client()
    factory = InformerFactory(client)
    ctl = RootCACertPublisher(client, factory, EventRecorder(client, "test"), root_ca_file=str(tmp_path / "ca.crt"))
    factory.start()
    await factory.wait_for_sync(5)
    for key in ("fresh", "leaving", "tampered", "missing"):
        await ctl.reconcile(key)
    assert fake.objects[("configmaps", f"fresh/{NAME}")]["data"] == {"ca.crt": CA}
    assert ("configmaps", f"leaving/{NAME}") not in fake.objects
    assert fake.objects[("configmaps", f"tampered/{NAME}")]["data"]["ca.crt"] == CA
    writes = [a for a in fake.actions if a[0] in ("POST", "PATCH", "PUT")]
    assert len(writes) == 2
    # Converged: nothing more to write.
    for _ in range(100):
        if (ctl.configmaps.store.get(f"tampered/{NAME}") or {}).get("data", {}).get("ca.crt") == CA \
                and f"fresh/{NAME}" in ctl.configmaps.store:
            break
        await asyncio.sleep(0.01)
    for key in ("fresh", "tampered"):
        await ctl.reconcile(key)
    assert len([a for a in fake.actions if a[0] in ("POST", "PATCH", "PUT")]) == 2
    await factory.stop()
    await client.aclose()


async def test_without_a_ca_file_nothing_is_published():
    fake = FakeAPIServer()
    fake.seed(ns("fresh"))
    client = fake.async_client()
    factory = InformerFactory(client)
    ctl = RootCACertPublisher(client, factory, EventRecorder(client, "test"))
    factory.start()
    await factory.wait_for_sync(5)
    await ctl.reconcile("fresh")
    assert not [a for a in fake.actions if a[0] == "POST"]
    await factory.stop()
    await client.aclose()
