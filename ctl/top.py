"""`top pods|nodes`: CPU and memory usage from the resource metrics API (`metrics.k8s.io/v1beta1`), as kubectl
prints it.

- `top pods [NAME] [-A] [-l SELECTOR] [--containers]`: NAME CPU(cores) MEMORY(bytes), a pod's usage being
  the sum of its containers' (`--containers` prints one row per container under POD and NAME; `-A` adds
  NAMESPACE).
- `top nodes [NAME] [-l SELECTOR]`: NAME CPU(cores) CPU(%) MEMORY(bytes) MEMORY(%), the percentages of
  the Node's `status.allocatable`; nodes without metrics are listed last with `<unknown>`.

CPU prints in millicores (`250m`), memory in mebibytes rounded down (`12Mi`), like kubectl. `--sort-by`
cpu or memory sorts the biggest first.
"""
from __future__ import annotations

import sys
from typing import Any

from api import registry
from api.errors import APIError
from api.quantity import parse_quantity
from ctl.command import Command
from ctl.discovery import UsageError
from ctl.printers import TabWriter, age

Obj = dict[str, Any]

NODE_METRICS = next(rd for rd in registry.METRICS if rd.kind == "NodeMetrics")
POD_METRICS = next(rd for rd in registry.METRICS if rd.kind == "PodMetrics")
NODES = registry.lookup("", "v1", "nodes")
PODS_NAMES = ("pods", "pod", "po")
NODES_NAMES = ("nodes", "node", "no")
MI = 1024 * 1024


class NoResources(Exception):
    """Nothing to show: kubectl says so on stderr and exits 0."""

    def __init__(self, where: str):
        super().__init__(f"No resources found in {where}.")


def add_arguments(p: Any) -> None:
    p.add_argument("kind", choices=[*PODS_NAMES, *NODES_NAMES], metavar="pods|nodes")
    p.add_argument("name", nargs="?", help="one pod or node")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="pods of every namespace")
    p.add_argument("-l", "--selector", default="", help="label selector")
    p.add_argument("--containers", action="store_true", help="one row per container")
    p.add_argument("--sort-by", choices=["cpu", "memory"], help="sort by usage, biggest first")
    p.add_argument("--no-headers", action="store_true", help="omit the header row")


def millicores(value: Any) -> int:
    return int(parse_quantity(value or "0") * 1000)


def mebibytes(value: Any) -> int:
    return int(parse_quantity(value or "0")) // MI


def _usage(usage: Obj) -> tuple[int, int]:
    """(millicores, bytes)."""
    return millicores(usage.get("cpu")), int(parse_quantity(usage.get("memory") or "0"))


def _percent(used: float, total: float) -> str:
    return f"{int(used * 100 // total)}%" if total else "<unknown>"


def _sorted(rows: list[tuple[Any, ...]], sort_by: str | None, cpu_at: int, mem_at: int) -> list[tuple[Any, ...]]:
    if sort_by == "cpu":
        return sorted(rows, key=lambda r: -r[cpu_at])
    if sort_by == "memory":
        return sorted(rows, key=lambda r: -r[mem_at])
    return rows


def top_pods(args: Any, session: Any) -> list[list[str]]:
    client = session.client
    namespace = None if args.all_namespaces else session.namespace
    if args.name:
        if args.all_namespaces:
            raise UsageError("a resource cannot be retrieved by name across all namespaces")
        try:
            items = [client.get(POD_METRICS, args.name, namespace)]
        except APIError as e:
            if e.code == 404:
                raise UsageError(f"Metrics not available for pod {namespace}/{args.name}, age: "
                                 f"{_pod_age(client, namespace, args.name)}") from None
            raise
    else:
        items = client.list(POD_METRICS, namespace, label_selector=args.selector or None).get("items") or []
    if not items:
        where = "any namespace" if namespace is None else f"{namespace} namespace"
        raise NoResources(where)
    prefix = ["NAMESPACE"] if args.all_namespaces else []
    rows: list[tuple[Any, ...]] = []
    for item in sorted(items, key=lambda i: (i["metadata"].get("namespace", ""), i["metadata"]["name"])):
        ns = [item["metadata"].get("namespace", "")] if args.all_namespaces else []
        if args.containers:
            for c in item.get("containers") or []:
                rows.append((*ns, item["metadata"]["name"], c.get("name", ""), *_usage(c.get("usage") or {})))
        else:
            cpu = mem = 0
            for c in item.get("containers") or []:
                c_cpu, c_mem = _usage(c.get("usage") or {})
                cpu, mem = cpu + c_cpu, mem + c_mem
            rows.append((*ns, item["metadata"]["name"], cpu, mem))
    header = prefix + (["POD", "NAME"] if args.containers else ["NAME"]) + ["CPU(cores)", "MEMORY(bytes)"]
    rows = _sorted(rows, args.sort_by, len(header) - 2, len(header) - 1)
    out = [] if args.no_headers else [header]
    out += [[*map(str, r[:-2]), f"{r[-2]}m", f"{r[-1] // MI}Mi"] for r in rows]
    return out


def _pod_age(client: Any, namespace: str, name: str) -> str:
    pod = client.get_or_none("pods", name, namespace)
    if pod is None:
        raise APIError(404, "NotFound", f'pods "{name}" not found', name, "pods")
    return age(pod["metadata"].get("creationTimestamp"))


def top_nodes(args: Any, session: Any) -> list[list[str]]:
    client = session.client
    if args.name:
        metrics = [client.get(NODE_METRICS, args.name)]
        nodes = [client.get(NODES, args.name)]
    else:
        metrics = client.list(NODE_METRICS, label_selector=args.selector or None).get("items") or []
        nodes = client.list(NODES, label_selector=args.selector or None).get("items") or []
    by_name = {m["metadata"]["name"]: m for m in metrics}
    rows: list[tuple[Any, ...]] = []
    missing = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        m = by_name.get(name)
        if m is None:
            missing.append(name)
            continue
        cpu, mem = _usage(m.get("usage") or {})
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        rows.append((name, cpu, mem, millicores(allocatable.get("cpu")),
                     int(parse_quantity(allocatable.get("memory") or "0"))))
    rows = _sorted(rows, args.sort_by, 1, 2)
    out = [] if args.no_headers else [["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]]
    out += [[name, f"{cpu}m", _percent(cpu, cpu_total), f"{mem // MI}Mi", _percent(mem, mem_total)]
            for name, cpu, mem, cpu_total, mem_total in rows]
    out += [[name] + ["<unknown>"] * 4 for name in missing]
    return out


def run(args: Any, session: Any) -> int:
    try:
        rows = top_nodes(args, session) if args.kind in NODES_NAMES else top_pods(args, session)
    except NoResources as e:
        print(e, file=sys.stderr)
        return 0
    print(TabWriter().format(rows), end="", flush=True)
    return 0


COMMANDS = [Command("top", "Display resource (CPU/memory) usage of pods or nodes", add_arguments, run)]
