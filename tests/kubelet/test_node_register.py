"""The kubelet waits for its control plane: registration retries while the apiserver is unreachable."""
from __future__ import annotations

import aiohttp
import pytest

from api.errors import APIError
from client.testing import FakeAPIServer
from kubelet.node import NodeAgent


class Flaky:
    """The fake apiserver's client, whose first `fail` creates cannot connect."""

    def __init__(self, client, fail: int, error: Exception) -> None:
        self.client, self.fail, self.error, self.attempts = client, fail, error, 0

    def __getattr__(self, name):
        return getattr(self.client, name)

    async def create(self, *args, **kw):
        self.attempts += 1
        if self.attempts <= self.fail:
            raise self.error
        return await self.client.create(*args, **kw)


def agent(client, tmp_path) -> NodeAgent:
    async def ready() -> None:
        return None
    return NodeAgent(client, node="n1", node_ip="127.0.0.1", port=10250, root_dir=tmp_path, labels={},
                     update_frequency=10, docker_version="24.0", ready_check=ready)


async def test_register_retries_until_the_apiserver_answers(tmp_path):
    fake = FakeAPIServer()
    client = Flaky(fake.async_client(), 3, aiohttp.ClientConnectionError("connection refused"))
    node = await agent(client, tmp_path).register(max_delay=0.05)
    assert client.attempts == 4 and node["metadata"]["name"] == "n1"
    # Registered once, with its status written after.
    assert len([a for a in fake.actions if a[0] == "POST" and a[1].endswith("/nodes")]) == 1
    assert {c["type"] for c in fake.objects[("nodes", "n1")]["status"]["conditions"]} >= {"Ready", "MemoryPressure"}


async def test_register_gives_up_at_once_on_a_refusal(tmp_path):
    fake = FakeAPIServer()
    client = Flaky(fake.async_client(), 1, APIError(403, "Forbidden", "nodes is forbidden"))
    with pytest.raises(APIError):
        await agent(client, tmp_path).register(max_delay=0.05)
    assert client.attempts == 1
