"""The token manager: TokenRequests to the apiserver (the fake), caching, refresh at 80% and fallbacks."""
from __future__ import annotations

import pytest

from client.testing import FakeAPIServer
from kubelet.tokens import MIN_EXPIRATION, TokenError, TokenKey, TokenManager, key_for, token_sources

NOW = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeAPIServer:
    fake = FakeAPIServer()
    fake.seed({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot", "namespace": "ns"}})
    return fake


def pod(**sa: str) -> dict:
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "pod-uid"},
            "spec": {**sa, "volumes": [
                {"name": "kube-api-access-abcde", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {"configMap": {"name": "kube-root-ca.crt"}}]}},
                {"name": "vault", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "t", "audience": "vault", "expirationSeconds": 60}}]}}]}}


def test_keys_default_service_account_and_clamp_expiration():
    sources = token_sources(pod())
    assert [key_for(pod(), s) for s in sources] == [
        TokenKey("ns", "default", "", 3607, "pod-uid"), TokenKey("ns", "default", "vault", MIN_EXPIRATION, "pod-uid")]
    assert key_for(pod(serviceAccountName="robot"), {}) == TokenKey("ns", "robot", "", 3600, "pod-uid")


async def test_token_request_body_and_cache(fake):
    clock = Clock()
    fake.clock = clock
    manager = TokenManager(fake.async_client(), clock=clock)
    key = TokenKey("ns", "robot", "vault", 3600, "pod-uid")
    token = await manager.get(key, "web")
    assert token == "fake-token-ns-robot-1"
    [(method, path, _, body)] = [a for a in fake.actions if a[1].endswith("/token")]
    assert (method, path) == ("POST", "/api/v1/namespaces/ns/serviceaccounts/robot/token")
    assert body == {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": {"audiences": ["vault"], "expirationSeconds": 3600,
                             "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "pod-uid"}}}
    assert await manager.get(key, "web") == token
    assert len(fake.issued_tokens) == 1
    assert manager.next_refresh([key]) == pytest.approx(0.8 * 3600, abs=1)


async def test_refresh_after_80_percent_of_the_ttl(fake):
    clock = Clock()
    fake.clock = clock
    manager = TokenManager(fake.async_client(), clock=clock)
    key = TokenKey("ns", "robot", "", 3600, "pod-uid")
    first = await manager.get(key, "web")
    clock.now += 0.79 * 3600
    assert await manager.get(key, "web") == first
    clock.now += 0.02 * 3600
    second = await manager.get(key, "web")
    assert second != first and len(fake.issued_tokens) == 2
    assert fake.issued_tokens[0][1]["audiences"] == []


async def test_tokens_older_than_a_day_are_refreshed(fake):
    clock = Clock()
    fake.clock = clock
    manager = TokenManager(fake.async_client(), clock=clock)
    key = TokenKey("ns", "robot", "", 7 * 24 * 3600, "pod-uid")
    first = await manager.get(key, "web")
    assert manager.next_refresh([key]) == pytest.approx(24 * 3600, abs=1)
    clock.now += 24 * 3600 + 1
    assert await manager.get(key, "web") != first


async def test_failed_refresh_keeps_a_valid_token_and_fails_once_it_expired(fake):
    clock = Clock()
    fake.clock = clock
    manager = TokenManager(fake.async_client(), clock=clock)
    key = TokenKey("ns", "robot", "", 3600, "pod-uid")
    first = await manager.get(key, "web")
    fake.down = True
    clock.now += 0.9 * 3600
    assert await manager.get(key, "web") == first
    clock.now += 0.2 * 3600
    with pytest.raises(TokenError, match="failed to fetch token"):
        await manager.get(key, "web")


async def test_missing_service_account_is_a_token_error(fake):
    manager = TokenManager(fake.async_client())
    with pytest.raises(TokenError, match="not found"):
        await manager.get(TokenKey("ns", "ghost", "", 3600, "pod-uid"), "web")


async def test_forget_pod_drops_its_tokens(fake):
    manager = TokenManager(fake.async_client())
    key = TokenKey("ns", "robot", "", 3600, "pod-uid")
    await manager.get(key, "web")
    manager.forget_pod("pod-uid")
    assert manager.next_refresh([key]) is None
    await manager.get(key, "web")
    assert len(fake.issued_tokens) == 2
