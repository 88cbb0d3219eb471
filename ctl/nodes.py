"""`cordon`, `uncordon` and `drain`: taking a node out of scheduling and emptying it, as kubectl does.

cordon/uncordon patch `spec.unschedulable`. drain = cordon, then pick the node's pods (fieldSelector
`spec.nodeName`) with kubectl's filters, each with its override flag:

- mirror pods (static pods' API copies) are skipped silently; finished pods are deleted freely;
- DaemonSet-managed pods are refused unless `--ignore-daemonsets`, which skips them (their controller
  would recreate them at once, and they tolerate unschedulable nodes);
- pods that declare no controller are refused unless `--force` (nothing would recreate them);
- pods with emptyDir volumes are refused unless `--delete-emptydir-data` (their data is lost).

A refusal aborts before anything is evicted. The rest are evicted (POST `pods/<name>/eviction`, which
respects PodDisruptionBudgets) or, with `--disable-eviction` or on a server without the eviction verb,
deleted; then drain waits until each is gone, by watch. An eviction a budget refuses (429) is retried
every 5 s, as kubectl does, until the budget allows it (the evicted pods' replacements become ready
elsewhere) or `--timeout` runs out.
"""
from __future__ import annotations

import sys
import time
from typing import Any

from api.errors import APIError
from ctl.command import Command
from ctl.waiting import wait_deleted

Obj = dict[str, Any]
MIRROR = "kubernetes.io/config.mirror"
EVICTION_RETRY_SECONDS = 5.0  # kubectl drain's wait between evictions a disruption budget refused


def set_unschedulable(session: Any, name: str, value: bool) -> str:
    rd = session.discovery.resolve("nodes")
    node = session.client.get(rd, name)
    word = "cordoned" if value else "uncordoned"
    if bool((node.get("spec") or {}).get("unschedulable")) == value:
        return f"node/{name} already {word}"
    session.client.patch(rd, name, {"spec": {"unschedulable": value or None}})
    return f"node/{name} {word}"


def controller_of(pod: Obj) -> Obj | None:
    return next((r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


def pod_key(pod: Obj) -> str:
    return f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"


def plan_drain(pods: list[Obj], *, ignore_daemonsets: bool, force: bool, delete_emptydir_data: bool
               ) -> tuple[list[Obj], list[str], list[str]]:
    """(pods to evict, warnings, errors) — kubectl's drain filters as plain data."""
    evict: list[Obj] = []
    refused: dict[str, list[str]] = {}
    warned: dict[str, list[str]] = {}
    for pod in pods:
        if MIRROR in (pod["metadata"].get("annotations") or {}):
            continue
        finished = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        owner = controller_of(pod)
        if owner and owner.get("kind") == "DaemonSet" and not finished:
            bucket = warned if ignore_daemonsets else refused
            bucket.setdefault("daemonset", []).append(pod_key(pod))
            continue
        if not owner and not finished:
            if not force:
                refused.setdefault("unmanaged", []).append(pod_key(pod))
                continue
            warned.setdefault("unmanaged", []).append(pod_key(pod))
        if any("emptyDir" in v for v in (pod.get("spec") or {}).get("volumes") or []) and not finished:
            if not delete_emptydir_data:
                refused.setdefault("emptydir", []).append(pod_key(pod))
                continue
            warned.setdefault("emptydir", []).append(pod_key(pod))
        evict.append(pod)
    errors = [f"{ERRORS[k]}: {', '.join(v)}" for k, v in refused.items()]
    warnings = [f"{WARNINGS[k]}: {', '.join(v)}" for k, v in warned.items()]
    return evict, warnings, errors


ERRORS = {"daemonset": "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)",
          "unmanaged": "cannot delete Pods that declare no controller (use --force to override)",
          "emptydir": "cannot delete Pods with local storage (use --delete-emptydir-data to override)"}
WARNINGS = {"daemonset": "ignoring DaemonSet-managed Pods", "unmanaged": "deleting Pods that declare no controller",
            "emptydir": "deleting Pods with local storage"}


def evict(session: Any, pod: Obj, *, grace: int | None, use_eviction: bool) -> str:
    """Evict (or delete) one pod: "evicted", "deleted" (the server cannot evict, or eviction is off) or
    "refused" (a disruption budget said no, for now). A pod already gone (404) is what we wanted anyway."""
    rd = session.discovery.resolve("pods")
    name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
    if use_eviction:
        body: Obj = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
        if grace is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": grace}
        try:
            session.client.create_subresource(rd, name, "eviction", body, namespace)
            return "evicted"
        except APIError as e:
            if e.code == 404:
                return "evicted"
            if e.code == 429:
                print(f'error when evicting pods/"{name}" -n "{namespace}" (will retry after '
                      f"{EVICTION_RETRY_SECONDS:g}s): {e.message}", file=sys.stderr, flush=True)
                return "refused"
            if e.code != 405:
                raise
            print("Warning: the server does not evict pods (405); deleting them instead", file=sys.stderr)
    try:
        session.client.delete(rd, name, namespace, grace_period_seconds=grace,
                              preconditions={"uid": pod["metadata"]["uid"]})
    except APIError as e:
        if e.code != 404:
            raise
    return "deleted"


def drain(args: Any, session: Any) -> int:
    name = args.node
    print(set_unschedulable(session, name, True), flush=True)
    pods = session.client.list_all(session.discovery.resolve("pods"), field_selector=f"spec.nodeName={name}",
                                   label_selector=args.selector).get("items") or []
    todo, warnings, errors = plan_drain(pods, ignore_daemonsets=args.ignore_daemonsets, force=args.force,
                                        delete_emptydir_data=args.delete_emptydir_data)
    if errors:
        print(f'error: unable to drain node "{name}" due to error: {", ".join(errors)}, continuing command...\n'
              f"There are pending nodes to be drained:\n {name}", file=sys.stderr)
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        return 1
    for w in warnings:
        print(f"Warning: {w}", file=sys.stderr)
    grace = args.grace_period if args.grace_period >= 0 else None
    use_eviction = not args.disable_eviction
    pod_rd = session.discovery.resolve("pods")
    deadline = time.monotonic() + args.timeout if args.timeout else None
    outcome: dict[str, str] = {}
    pending = list(todo)
    while pending:
        refused = []
        for pod in pending:
            print(f"evicting pod {pod_key(pod)}", flush=True)
            outcome[pod_key(pod)] = evict(session, pod, grace=grace, use_eviction=use_eviction)
            use_eviction = use_eviction and outcome[pod_key(pod)] != "deleted"
            if outcome[pod_key(pod)] == "refused":
                refused.append(pod)
        pending = refused
        if pending:
            if deadline is not None and time.monotonic() + EVICTION_RETRY_SECONDS > deadline:
                print(f"error: unable to drain node \"{name}\": drain did not complete within "
                      f"{args.timeout:g}s; pods left: {', '.join(pod_key(p) for p in pending)}", file=sys.stderr)
                return 1
            time.sleep(EVICTION_RETRY_SECONDS)
    for pod in todo:
        meta = pod["metadata"]
        wait_deleted(session.client, pod_rd, meta["namespace"], meta["name"], meta["uid"],
                     timeout=max(1.0, deadline - time.monotonic()) if deadline is not None else None)
        print(f"pod/{meta['name']} {outcome[pod_key(pod)]}", flush=True)
    print(f"node/{name} drained")
    return 0


def add_node_argument(p: Any) -> None:
    p.add_argument("node", metavar="NODE")


def add_drain_arguments(p: Any) -> None:
    add_node_argument(p)
    p.add_argument("--ignore-daemonsets", action="store_true", help="skip DaemonSet-managed pods")
    p.add_argument("--force", action="store_true", help="also delete pods that declare no controller")
    p.add_argument("--delete-emptydir-data", action="store_true", help="also delete pods using emptyDir")
    p.add_argument("--disable-eviction", action="store_true", help="delete pods instead of evicting them")
    p.add_argument("--grace-period", type=int, default=-1, help="seconds for each pod to terminate (-1: its own)")
    p.add_argument("--timeout", type=float, default=0, help="seconds to wait for pods to go; 0 means no limit")
    p.add_argument("-l", "--selector", help="only drain pods matching this label selector")


def cordon(args: Any, session: Any) -> int:
    print(set_unschedulable(session, args.node, True))
    return 0


def uncordon(args: Any, session: Any) -> int:
    print(set_unschedulable(session, args.node, False))
    return 0


COMMANDS = [Command("cordon", "Mark node as unschedulable", add_node_argument, cordon),
            Command("uncordon", "Mark node as schedulable", add_node_argument, uncordon),
            Command("drain", "Drain node in preparation for maintenance", add_drain_arguments, drain)]
