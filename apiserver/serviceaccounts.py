"""ServiceAccount tokens: issued by TokenRequest, accepted as bearer tokens, mounted into pods.

- `TokenIssuer` signs JWTs (ES256) with the key from `--service-account-signing-key-file` (without one,
  a key made at start-up: tokens then die with the process). Claims as Kubernetes' bound tokens: `iss`,
  `sub` = `system:serviceaccount:<ns>:<name>`, `aud`, `exp`/`iat`/`nbf`, and a private `kubernetes.io`
  claim naming the namespace, the ServiceAccount (name, uid) and the pod the token is bound to.
- `TokenAuthenticator` accepts such a token when the signature, issuer, audience and expiry check out
  *and* the ServiceAccount (and the bound pod) still exist with the same uid — deleting either revokes
  every token issued for it. The lookups read the watch cache; a verified signature is memoised.
  The user is `system:serviceaccount:<ns>:<name>` in groups `system:serviceaccounts`,
  `system:serviceaccounts:<ns>` and `system:authenticated`.
- `token_request` answers `POST .../serviceaccounts/<name>/token` (authentication.k8s.io/v1
  TokenRequest): expirationSeconds at least 600 (default 3600), audiences default to the API's,
  boundObjectRef must name an existing Pod or Secret with the given uid.
- `mount_api_access` is the ServiceAccount admission step for new pods: `serviceAccountName` defaults to
  `default`, and unless `automountServiceAccountToken` is false (on the pod, else on the ServiceAccount) a
  projected `kube-api-access-<suffix>` volume — the token, `kube-root-ca.crt`'s `ca.crt` and the namespace
  — is mounted read-only at /var/run/secrets/kubernetes.io/serviceaccount in every container, which is
  where in-cluster clients look.
"""
from __future__ import annotations

import random
import string
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from api import errors, registry
from api.errors import Cause
from api.rbac import AUTHENTICATED, SA_PREFIX, UserInfo
from apiserver.nodeauthz import restrict_token_request

if TYPE_CHECKING:
    from apiserver.watchcache import WatchCache

Obj = dict[str, Any]

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
MIN_EXPIRATION = 600
DEFAULT_EXPIRATION = 3600
MAX_EXPIRATION = 2**32
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
PRIVATE_CLAIM = "kubernetes.io"
MEMO_LIMIT = 10_000


class TokenIssuer:
    def __init__(self, key_file: Path | None = None, issuer: str = DEFAULT_ISSUER,
                 audiences: list[str] | None = None) -> None:
        if key_file is not None:
            self.key = serialization.load_pem_private_key(Path(key_file).read_bytes(), None)
        else:
            self.key = ec.generate_private_key(ec.SECP256R1())
        self.public_key = self.key.public_key()
        self.issuer = issuer
        self.audiences = audiences or [issuer]

    def issue(self, namespace: str, sa: Obj, *, audiences: list[str], expiration: int,
              bound: Obj | None = None) -> tuple[str, int]:
        now = int(time.time())
        meta = sa["metadata"]
        private: Obj = {"namespace": namespace, "serviceaccount": {"name": meta["name"], "uid": meta.get("uid")}}
        if bound is not None:
            private[bound["kind"].lower()] = {"name": bound["name"], "uid": bound["uid"]}
        claims = {"iss": self.issuer, "sub": f"{SA_PREFIX}{namespace}:{meta['name']}", "aud": audiences,
                  "iat": now, "nbf": now, "exp": now + expiration, PRIVATE_CLAIM: private}
        return jwt.encode(claims, self.key, algorithm="ES256"), now + expiration

    def verify(self, token: str) -> Obj | None:
        try:
            return jwt.decode(token, self.public_key, algorithms=["ES256"], audience=self.audiences,
                              issuer=self.issuer, options={"require": ["exp", "iss", "sub", "aud"]})
        except jwt.PyJWTError:
            return None


def _cached(cache: "WatchCache", plural: str, namespace: str, name: str) -> Obj | None:
    rd = registry.lookup("", "v1", plural)
    return cache.cache_for(rd).objects.get(f"{rd.storage_prefix()}{namespace}/{name}")


class TokenAuthenticator:
    def __init__(self, issuer: TokenIssuer, cache: "WatchCache") -> None:
        self.issuer = issuer
        self.cache = cache
        self._verified: dict[str, Obj] = {}

    def __call__(self, token: str) -> UserInfo | None:
        if token.count(".") != 2:
            return None
        claims = self._verified.get(token)
        if claims is None or claims["exp"] <= time.time():
            claims = self.issuer.verify(token)
            if claims is None:
                return None
            if len(self._verified) >= MEMO_LIMIT:
                self._verified.clear()
            self._verified[token] = claims
        private = claims.get(PRIVATE_CLAIM) or {}
        namespace = private.get("namespace") or ""
        sa_ref = private.get("serviceaccount") or {}
        sa = _cached(self.cache, "serviceaccounts", namespace, sa_ref.get("name") or "")
        if sa is None or sa["metadata"].get("uid") != sa_ref.get("uid"):
            return None
        for kind, plural in (("pod", "pods"), ("secret", "secrets")):
            ref = private.get(kind)
            if ref is not None:
                obj = _cached(self.cache, plural, namespace, ref.get("name") or "")
                if obj is None or obj["metadata"].get("uid") != ref.get("uid"):
                    return None
        return UserInfo(claims["sub"], ("system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                                        AUTHENTICATED), sa_ref.get("uid") or "")


def token_request(issuer: TokenIssuer, cache: "WatchCache", namespace: str, name: str, body: Any,
                  user: UserInfo | None = None) -> Obj:
    """The answered TokenRequest (status.token, status.expirationTimestamp). A node (`user`) may only ask
    for tokens bound to its own pods (NodeRestriction)."""
    if not isinstance(body, dict):
        raise errors.bad_request("a TokenRequest must be a JSON object")
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    sa = _cached(cache, "serviceaccounts", namespace, name)
    if sa is None:
        raise errors.not_found("serviceaccounts", name)
    causes = []
    expiration = spec.get("expirationSeconds", DEFAULT_EXPIRATION)
    if not isinstance(expiration, int) or isinstance(expiration, bool) or \
            not MIN_EXPIRATION <= expiration <= MAX_EXPIRATION:
        causes.append(Cause("spec.expirationSeconds", f"Invalid value: {expiration!r}: may not specify a duration "
                                                      f"less than {MIN_EXPIRATION} seconds or longer than 2^32 seconds"))
    audiences = spec.get("audiences") or issuer.audiences
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        causes.append(Cause("spec.audiences", "Invalid value: must be a list of non-empty strings"))
    ref = spec.get("boundObjectRef")
    if ref is not None and (not isinstance(ref, dict) or ref.get("kind") not in ("Pod", "Secret")):
        causes.append(Cause("spec.boundObjectRef.kind", 'Unsupported value: supported values: "Pod", "Secret"',
                            "FieldValueNotSupported"))
    if causes:
        raise errors.invalid("TokenRequest", name, causes, "authentication.k8s.io")
    bound = None
    if ref is not None:
        plural = "pods" if ref["kind"] == "Pod" else "secrets"
        obj = _cached(cache, plural, namespace, str(ref.get("name") or ""))
        if obj is None:
            raise errors.not_found(plural, str(ref.get("name") or ""))
        uid = obj["metadata"].get("uid")
        if ref.get("uid") and ref["uid"] != uid:
            raise errors.conflict(plural, ref["name"], f'the UID in the bound object reference ({ref["uid"]}) does '
                                                       f'not match the UID in record ({uid}); the object might have '
                                                       f'been deleted and then recreated')
        bound = {"kind": ref["kind"], "name": ref["name"], "uid": uid}
    restrict_token_request(user, ref, obj if ref is not None else None)
    token, expires = issuer.issue(namespace, sa, audiences=audiences, expiration=expiration, bound=bound)
    stamp = datetime.fromtimestamp(expires, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "metadata": {"name": name, "namespace": namespace,
                         "creationTimestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")},
            "spec": {**spec, "audiences": audiences, "expirationSeconds": expiration},
            "status": {"token": token, "expirationTimestamp": stamp}}


def api_access_volume(name: str) -> Obj:
    return {"name": name, "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                        "fieldPath": "metadata.namespace"}}]}}]}}


def mount_api_access(pod: Obj, cache: "WatchCache") -> None:
    """ServiceAccount admission on pod creation (see the module docstring); mutates `pod`."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = spec["serviceAccount"] = name
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        sa = _cached(cache, "serviceaccounts", (pod.get("metadata") or {}).get("namespace") or "", name)
        automount = (sa or {}).get("automountServiceAccountToken", True)
    containers = [c for key in ("initContainers", "containers") for c in spec.get(key) or []
                  if isinstance(c, dict)]
    if automount is False or any(m.get("mountPath") == MOUNT_PATH for c in containers
                                 for m in c.get("volumeMounts") or [] if isinstance(m, dict)):
        return
    volume = "kube-api-access-" + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
    spec["volumes"] = [*(spec.get("volumes") or []), api_access_volume(volume)]
    for c in containers:
        c["volumeMounts"] = [*(c.get("volumeMounts") or []),
                             {"name": volume, "readOnly": True, "mountPath": MOUNT_PATH}]
