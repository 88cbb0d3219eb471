"""policy/v1 Eviction: a pod delete that asks the pod's PodDisruptionBudget first.

As Kubernetes' eviction REST (pkg/registry/core/pod/storage/eviction.go):

- A pod that cannot disrupt anything — already terminal (Succeeded/Failed), still Pending, or already
  being deleted — is deleted without looking at budgets. So is a pod no budget selects.
- More than one budget selecting the pod is refused (500): the API cannot spend from two at once.
- A pod that is not Ready is deleted without spending the budget when the budget's
  `unhealthyPodEvictionPolicy` is AlwaysAllow, or (IfHealthyBudget, the default) when the budget is
  currently met; the delete then carries the pod's resourceVersion as a precondition, so a pod that turned
  Ready meanwhile is not taken on that basis.
- Otherwise one disruption is spent: the budget's status must be current (observedGeneration), and
  `disruptionsAllowed` above zero. Spending writes the budget's status (one fewer allowed, the pod added
  to `disruptedPods`) guarded by its resourceVersion, so concurrent evictions cannot spend the same
  disruption twice; a lost race re-reads and decides again. A refusal is 429 TooManyRequests with a
  `DisruptionBudget` cause saying why, which `kubectl drain` retries.

With dryRun nothing is written and nothing deleted, but the answer is the same.
"""
from __future__ import annotations

import copy
from typing import Any

from api import disruption, errors, registry
from api.errors import APIError, Cause
from apiserver.storage import CompareFailed, Store
from apiserver.strategy import now_rfc3339

Obj = dict[str, Any]

PDBS = registry.lookup("policy", "v1", "poddisruptionbudgets")
assert PDBS is not None
MAX_DISRUPTED_PODS = 2000  # Kubernetes' MaxDisruptedPodSize
RETRIES = 16
REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."


def too_many_requests(why: str) -> APIError:
    return APIError(429, "TooManyRequests", REFUSED, causes=[Cause("", why, "DisruptionBudget")])


def budget_ignorable(pod: Obj) -> bool:
    """Pods whose deletion disrupts nothing a budget counts (canIgnorePDB)."""
    return bool(pod["metadata"].get("deletionTimestamp")) or \
        (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Pending")


def unhealthy_pod_may_go(pdb: Obj) -> bool:
    if disruption.unhealthy_pod_eviction_policy(pdb) == disruption.ALWAYS_ALLOW:
        return True
    status = pdb.get("status") or {}
    desired = status.get("desiredHealthy") or 0
    return desired > 0 and (status.get("currentHealthy") or 0) >= desired


def spend(pdb: Obj, pod_name: str) -> Obj:
    """The budget after spending one disruption on `pod_name`, or the error refusing it (checkAndDecrement)."""
    name, status = pdb["metadata"]["name"], pdb.get("status") or {}
    if (status.get("observedGeneration") or 0) < (pdb["metadata"].get("generation") or 0):
        raise too_many_requests(f"The disruption budget {name} is still being processed by the server.")
    allowed = status.get("disruptionsAllowed") or 0
    if allowed < 0:
        raise errors.forbidden("pdb disruptions allowed is negative")
    if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
        raise errors.forbidden("DisruptedPods map too big - too many evictions not confirmed by PDB controller")
    if allowed == 0:
        raise too_many_requests(f"The disruption budget {name} needs {status.get('desiredHealthy', 0)} healthy "
                                f"pods and has {status.get('currentHealthy', 0)} currently")
    out = copy.deepcopy(pdb)
    new_status = out.setdefault("status", {})
    new_status["disruptionsAllowed"] = allowed - 1
    new_status["disruptedPods"] = {**(status.get("disruptedPods") or {}), pod_name: now_rfc3339()}
    if allowed - 1 == 0:
        old = disruption.find_condition(new_status, disruption.DISRUPTION_ALLOWED)
        disruption.set_condition(new_status, disruption.disruption_allowed_condition(0, old=old, now=now_rfc3339()))
    return out


async def admit(store: Store, pod_key: str, namespace: str, name: str, *, dry_run: bool) -> Obj:
    """Decide an eviction of pod `namespace/name`; spend from its budget when that is what allows it.

    Returns the delete preconditions the eviction's delete must add ({} for none); raises when refused."""
    for _ in range(RETRIES):
        pod = await store.get(pod_key)
        if pod is None:
            raise errors.not_found("pods", name)
        if budget_ignorable(pod):
            return {}
        pdbs, _, _ = await store.list(f"{PDBS.storage_prefix()}{namespace}/")
        pdbs = [b for b in pdbs if disruption.selects(b, pod)]
        if not pdbs:
            return {}
        if len(pdbs) > 1:
            raise errors.internal("This pod has more than one PodDisruptionBudget, which the eviction "
                                  "subresource does not support.")
        pdb = pdbs[0]
        if not disruption.is_pod_ready(pod) and unhealthy_pod_may_go(pdb):
            return {"resourceVersion": pod["metadata"]["resourceVersion"]}
        spent = spend(pdb, name)
        if dry_run:
            return {}
        rv = pdb["metadata"]["resourceVersion"]
        try:
            await store.update(f"{PDBS.storage_prefix()}{namespace}/{pdb['metadata']['name']}", spent, int(rv))
        except CompareFailed:
            continue  # another eviction or the controller wrote the budget: decide again on the new one
        return {}
    raise too_many_requests("too many concurrent evictions on this disruption budget; try again")
