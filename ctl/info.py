"""`version`, `api-resources` and `cluster-info`: what the client and the server are.

`api-resources` prints discovery as kubectl does (NAME, SHORTNAMES, APIVERSION, NAMESPACED, KIND; `-o wide`
adds VERBS and CATEGORIES; `-o name` prints `plural.group`).
"""
from __future__ import annotations

import sys
from typing import Any

from ctl.command import Command
from ctl.printers import TabWriter, to_json, to_yaml

CLIENT_VERSION = {"major": "1", "minor": "30", "gitVersion": "v1.30.0-minik8s", "platform": sys.platform}


def add_version_arguments(p: Any) -> None:
    p.add_argument("--client", action="store_true", help="only the client version")
    p.add_argument("-o", "--output", choices=["yaml", "json"])


def version(args: Any, session: Any) -> int:
    doc: dict[str, Any] = {"clientVersion": CLIENT_VERSION}
    if not args.client:
        doc["serverVersion"] = session.client.request("GET", "/version")
    if args.output == "json":
        sys.stdout.write(to_json(doc))
    elif args.output == "yaml":
        sys.stdout.write(to_yaml(doc))
    else:
        print(f"Client Version: {CLIENT_VERSION['gitVersion']}")
        if not args.client:
            print(f"Server Version: {doc['serverVersion'].get('gitVersion')}")
    return 0


def add_api_resources_arguments(p: Any) -> None:
    p.add_argument("--namespaced", choices=["true", "false"], help="only namespaced (true) or cluster-scoped (false)")
    p.add_argument("--api-group", help="only this API group ('' for core)")
    p.add_argument("-o", "--output", choices=["wide", "name"])
    p.add_argument("--no-headers", action="store_true")


def api_resources(args: Any, session: Any) -> int:
    rows = []
    for rd in sorted(session.discovery.resources, key=lambda r: (r.group, r.plural)):
        if args.namespaced is not None and rd.namespaced != (args.namespaced == "true"):
            continue
        if args.api_group is not None and rd.group != args.api_group:
            continue
        if args.output == "name":
            print(f"{rd.plural}.{rd.group}" if rd.group else rd.plural)
            continue
        row = [rd.plural, ",".join(rd.short_names), rd.api_version, str(rd.namespaced).lower(), rd.kind]
        if args.output == "wide":
            row += [",".join(rd.verbs), ",".join(rd.categories)]
        rows.append(row)
    if args.output != "name":
        head = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
        head += ["VERBS", "CATEGORIES"] if args.output == "wide" else []
        sys.stdout.write(TabWriter().format(([] if args.no_headers else [head]) + rows))
    return 0


def cluster_info(args: Any, session: Any) -> int:
    session.client.request("GET", "/version")   # fails like kubectl when the server is unreachable
    print(f"Kubernetes control plane is running at {session.config.server}")
    dns = session.client.get_or_none(session.discovery.resolve("services"), "kube-dns", "kube-system")
    if dns is not None:
        print(f"CoreDNS is running at {session.config.server}/api/v1/namespaces/kube-system/services/"
              "kube-dns:dns/proxy")
    print("\nTo further debug and diagnose cluster problems, use 'minik8s ctl get events -A' and "
          "'minik8s ctl describe nodes'.")
    return 0


COMMANDS = [Command("version", "Print the client and server version information", add_version_arguments, version),
            Command("api-resources", "Print the supported API resources on the server", add_api_resources_arguments,
                    api_resources),
            Command("cluster-info", "Display cluster information", lambda p: None, cluster_info)]
