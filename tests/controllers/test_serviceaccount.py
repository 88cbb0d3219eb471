"""ServiceAccount controller against the in-memory fake apiserver."""
from __future__ import annotations

import asyncio

import pytest

from client.events import EventRecorder
from client.factory import InformerFactory
from client.testing import FakeAPIServer
from controllers.serviceaccount import ServiceAccountController


def ns(name: str, terminating: bool = False) -> dict:
    meta = {"name": name, **({"deletionTimestamp": "2030-01-01T00:00:00Z"} if terminating else {})}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta,
            "status": {"phase": "Terminating" if terminating else "Active"}}


@pytest.fixture
async def fake():
    fake = FakeAPIServer()
    yield fake
    await asyncio.sleep(0.05)  # the fake watch stream can swallow a cancellation that meets a ready event
    for stop in fake.cleanup:
        await stop()


async def test_default_service_account_is_created_kept_and_recreated(fake):
    fake.seed(ns("fresh"))
    fake.seed(ns("has"))
    fake.seed(ns("leaving", terminating=True))
    fake.seed({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "has"}})
    client = fake.async_client()
    factory = InformerFactory(client)
    ctl = ServiceAccountController(client, factory, EventRecorder(client, "test"))
    fake.cleanup = [factory.stop, client.aclose]
    factory.start()
    await factory.wait_for_sync(5)
    for key in ("fresh", "has", "leaving", "missing"):
        await ctl.reconcile(key)
    creates = [a for a in fake.actions if a[0] == "POST"]
    assert [a[1] for a in creates] == ["/api/v1/namespaces/fresh/serviceaccounts"]
    assert ("serviceaccounts", "fresh/default") in fake.objects

    # Deleted: the deletion queues the namespace, and reconcile creates it again.
    await client.delete("serviceaccounts", "default", "has")
    for _ in range(100):
        if "has/default" not in ctl.accounts.store:
            break
        await asyncio.sleep(0.01)
    await ctl.reconcile("has")
    assert ("serviceaccounts", "has/default") in fake.objects
