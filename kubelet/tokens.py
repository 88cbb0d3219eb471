"""Service account tokens for projected volumes, from the apiserver's TokenRequest API (the kubelet's token manager).

A `serviceAccountToken` projection asks for a token bound to the pod: the kubelet POSTs a TokenRequest to
`serviceaccounts/<sa>/token` with the audience, the expiration and a `boundObjectRef` naming the pod, and
writes `status.token` into the volume. Tokens are cached per (namespace, service account, audience,
expiration, pod uid) and refreshed, like Kubernetes' token manager, once 80% of their lifetime has passed
or they are older than 24 hours; a token that cannot be refreshed is kept while it is still valid. A
request that fails with no valid token to fall back on raises `TokenError`, and the pod's volumes are
not set up (its containers wait; the pod worker retries).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from client.rest import AsyncClient

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_TTL = 24 * 3600
REFRESH_FRACTION = 0.8


class TokenError(Exception):
    """No token could be had for a serviceAccountToken projection."""


@dataclass(frozen=True)
class TokenKey:
    namespace: str
    service_account: str
    audience: str
    expiration: int
    pod_uid: str


@dataclass(frozen=True)
class Token:
    token: str
    issued: float       # epoch seconds: expiry minus the granted lifetime
    expires: float

    def refresh_at(self) -> float:
        ttl = self.expires - self.issued
        return min(self.issued + REFRESH_FRACTION * ttl, self.issued + MAX_TTL)


def expiration_of(source: Obj) -> int:
    seconds = source.get("expirationSeconds")
    return DEFAULT_EXPIRATION if seconds is None else max(MIN_EXPIRATION, int(seconds))


def token_sources(pod: Obj) -> list[Obj]:
    """Every serviceAccountToken projection of the pod's volumes."""
    out = []
    for v in (pod.get("spec") or {}).get("volumes") or []:
        for source in (v.get("projected") or {}).get("sources") or []:
            if source.get("serviceAccountToken") is not None:
                out.append(source["serviceAccountToken"])
    return out


def key_for(pod: Obj, source: Obj) -> TokenKey:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    return TokenKey(namespace=meta.get("namespace") or "default",
                    service_account=spec.get("serviceAccountName") or spec.get("serviceAccount") or "default",
                    audience=source.get("audience") or "", expiration=expiration_of(source),
                    pod_uid=meta.get("uid") or "")


def _parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class TokenManager:
    def __init__(self, client: AsyncClient, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock
        self._tokens: dict[TokenKey, Token] = {}

    async def get(self, key: TokenKey, pod_name: str) -> str:
        """A valid token for `key`, from the cache or (when due for refresh) the apiserver."""
        now = self.clock()
        cached = self._tokens.get(key)
        if cached is not None and now < cached.refresh_at():
            return cached.token
        try:
            fresh = await self._request(key, pod_name)
        except Exception as e:  # whatever went wrong, a still-valid token is better than none
            if cached is not None and now < cached.expires:
                logger.warning("refreshing token of serviceaccount %s/%s for pod %s failed, keeping the current "
                               "one until it expires: %s", key.namespace, key.service_account, pod_name, e)
                return cached.token
            raise TokenError(f"failed to fetch token: {e}") from e
        self._tokens[key] = fresh
        logger.info("token for serviceaccount %s/%s (pod %s/%s, audience %r) obtained, expires %s",
                    key.namespace, key.service_account, key.namespace, pod_name, key.audience,
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(fresh.expires)))
        return fresh.token

    async def _request(self, key: TokenKey, pod_name: str) -> Token:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [key.audience] if key.audience else [],
                         "expirationSeconds": key.expiration,
                         "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod_name,
                                            "uid": key.pod_uid}}}
        answer = await self.client.create_subresource("serviceaccounts", key.service_account, "token", body,
                                                      key.namespace)
        status = answer.get("status") or {}
        token = status.get("token")
        if not token:
            raise ValueError("the TokenRequest answer carries no status.token")
        expires = _parse_time(status["expirationTimestamp"])
        granted = (answer.get("spec") or {}).get("expirationSeconds") or key.expiration
        return Token(token=token, issued=expires - int(granted), expires=expires)

    def next_refresh(self, keys: list[TokenKey]) -> float | None:
        """Seconds until the first of `keys` is due for refresh (None when none is cached)."""
        times = [self._tokens[k].refresh_at() for k in keys if k in self._tokens]
        return max(0.0, min(times) - self.clock()) if times else None

    def forget_pod(self, uid: str) -> None:
        for key in [k for k in self._tokens if k.pod_uid == uid]:
            del self._tokens[key]
