"""`rollout status|history|undo|restart|pause|resume` for Deployments, as kubectl implements each.

- status: watches the Deployment by name and prints kubectl's progress lines (from generation,
  observedGeneration, replicas, updatedReplicas, availableReplicas) until the rollout completes, fails its
  progress deadline (exit 1) or `--timeout` passes.
- history: the revisions of the Deployment's ReplicaSets (`deployment.kubernetes.io/revision`) with their
  `kubernetes.io/change-cause`; `--revision N` shows that revision's pod template.
- undo: one JSON patch replacing `/spec/template` (the old ReplicaSet's, without pod-template-hash) and
  `/metadata/annotations` — kubectl's rollback; the controller then reuses the old ReplicaSet.
- restart: the pod-template annotation `kubectl.kubernetes.io/restartedAt`, which changes the template and
  so rolls every pod.
"""
from __future__ import annotations

import datetime
import sys
from typing import Any

from ctl import resources
from ctl.command import Command
from ctl.describe import Page, containers_section, meta
from ctl.discovery import UsageError, kind_name
from ctl.pods import selector_string
from ctl.waiting import watch_until

Obj = dict[str, Any]
REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
# Annotations a rollback does not copy from the ReplicaSet (kubectl's annotationsToSkip).
NOT_COPIED = {"kubectl.kubernetes.io/last-applied-configuration", REVISION, "deployment.kubernetes.io/revision-history",
              "deployment.kubernetes.io/desired-replicas", "deployment.kubernetes.io/max-replicas",
              "deprecated.deployment.rollback.to"}


def deployment_status(d: Obj) -> tuple[str, bool]:
    """kubectl's DeploymentStatusViewer: the line to print and whether the rollout is complete."""
    name, spec, status = meta(d)["name"], d.get("spec") or {}, d.get("status") or {}
    if meta(d).get("generation", 0) > status.get("observedGeneration", 0):
        return "Waiting for deployment spec update to be observed...", False
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            raise UsageError(f'deployment "{name}" exceeded its progress deadline')
    desired, updated = spec.get("replicas", 1), status.get("updatedReplicas", 0)
    total, available = status.get("replicas", 0), status.get("availableReplicas", 0)
    if updated < desired:
        return (f'Waiting for deployment "{name}" rollout to finish: {updated} out of {desired} new replicas '
                "have been updated..."), False
    if total > updated:
        return (f'Waiting for deployment "{name}" rollout to finish: {total - updated} old replicas are pending '
                "termination..."), False
    if available < updated:
        return (f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} updated replicas '
                "are available..."), False
    return f'deployment "{name}" successfully rolled out', True


def one_deployment(session: Any, args: list[str], kinds: tuple[str, ...] = ("Deployment",)
                   ) -> tuple[Any, str | None, str]:
    sels = resources.select(session, args)
    if len(sels) != 1 or len(sels[0].names) != 1:
        raise UsageError("required resource not specified: give exactly one TYPE NAME or TYPE/NAME")
    sel = sels[0]
    if sel.rd.kind not in kinds:
        raise UsageError(f"no rollout support for {kind_name(sel.rd)} here (supported: {', '.join(kinds)})")
    return sel.rd, sel.namespace, sel.names[0]


def owned_replicasets(session: Any, d: Obj) -> list[Obj]:
    rs_rd = session.discovery.resolve("replicasets.apps")
    selector = selector_string((d.get("spec") or {}).get("selector") or {})
    items = session.client.list(rs_rd, meta(d).get("namespace"), label_selector=selector).get("items") or []
    owned = [rs for rs in items if any(r.get("uid") == meta(d).get("uid") for r in meta(rs).get("ownerReferences") or [])]
    return sorted(owned, key=revision_of)


def revision_of(rs: Obj) -> int:
    try:
        return int((meta(rs).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def template_without_hash(rs: Obj) -> Obj:
    template = dict((rs.get("spec") or {}).get("template") or {})
    template_meta = dict(template.get("metadata") or {})
    labels = {k: v for k, v in (template_meta.get("labels") or {}).items() if k != "pod-template-hash"}
    template_meta["labels"] = labels
    template["metadata"] = template_meta
    return template


def status(args: Any, session: Any) -> int:
    rd, namespace, name = one_deployment(session, args.resources)
    last: list[str] = []

    def check(d: Obj | None) -> bool | None:
        if d is None:
            raise UsageError(f'deployment "{name}" was deleted')
        message, done = deployment_status(d)
        if not last or last[-1] != message:
            print(message, flush=True)
            last.append(message)
        return True if done or not args.watch else None

    watch_until(session.client, rd, namespace, name, check, timeout=args.timeout or None)
    return 0


def history(args: Any, session: Any) -> int:
    rd, namespace, name = one_deployment(session, args.resources)
    d = session.client.get(rd, name, namespace)
    sets = owned_replicasets(session, d)
    if args.revision:
        match = [rs for rs in sets if revision_of(rs) == args.revision]
        if not match:
            raise UsageError(f"unable to find the specified revision {args.revision}")
        template = template_without_hash(match[0])
        page = Page()
        page.add(0, "Pod Template:")
        page.mapping(1, "Labels", meta(template).get("labels"))
        annotations = meta(template).get("annotations")
        if annotations:
            page.mapping(1, "Annotations", annotations, sep=": ")
        sub = Page()
        containers_section(sub, "Containers", (template.get("spec") or {}).get("containers") or [], [])
        page.lines += [["  " + line[0], *line[1:]] for line in sub.lines]
        sys.stdout.write(f"{kind_name(rd)}/{name} with revision #{args.revision}\n" + page.render())
        return 0
    print(f"{kind_name(rd)}/{name} ")
    print("REVISION  CHANGE-CAUSE")
    for rs in sets:
        cause = (meta(rs).get("annotations") or {}).get(CHANGE_CAUSE) or "<none>"
        print(f"{str(revision_of(rs)).ljust(10)}{cause}")
    print()
    return 0


def undo(args: Any, session: Any) -> int:
    rd, namespace, name = one_deployment(session, args.resources)
    d = session.client.get(rd, name, namespace)
    sets = [rs for rs in owned_replicasets(session, d) if revision_of(rs) > 0]
    if args.to_revision:
        target = next((rs for rs in sets if revision_of(rs) == args.to_revision), None)
        if target is None:
            raise UsageError(f"unable to find specified revision {args.to_revision} in history")
    else:
        if len(sets) < 2:
            raise UsageError(f'no rollout history found for deployment "{name}"')
        target = sets[-2]
    template = template_without_hash(target)
    if template == (d.get("spec") or {}).get("template"):
        print(f"{kind_name(rd)}/{name} skipped rollback (current template already matches revision "
              f"{revision_of(target)})")
        return 0
    annotations = dict(meta(d).get("annotations") or {})
    annotations.update({k: v for k, v in (meta(target).get("annotations") or {}).items() if k not in NOT_COPIED})
    patch = [{"op": "replace", "path": "/spec/template", "value": template},
             {"op": "add", "path": "/metadata/annotations", "value": annotations}]
    session.client.patch(rd, name, patch, namespace, patch_type="json")
    print(f"{kind_name(rd)}/{name} rolled back")
    return 0


def restart(args: Any, session: Any) -> int:
    rd, namespace, name = one_deployment(session, args.resources, ("Deployment", "DaemonSet", "StatefulSet"))
    d = session.client.get(rd, name, namespace)
    if (d.get("spec") or {}).get("paused"):
        raise UsageError(f"{kind_name(rd)}/{name} can't restart paused deployment (run rollout resume first)")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
    session.client.patch(rd, name, patch, namespace, patch_type="strategic")
    print(f"{kind_name(rd)}/{name} restarted")
    return 0


def set_paused(args: Any, session: Any, paused: bool) -> int:
    rd, namespace, name = one_deployment(session, args.resources)
    d = session.client.get(rd, name, namespace)
    word = "paused" if paused else "resumed"
    if bool((d.get("spec") or {}).get("paused")) == paused:
        raise UsageError(f"{kind_name(rd)}/{name} is {'already' if paused else 'not'} paused")
    session.client.patch(rd, name, {"spec": {"paused": paused or None}}, namespace)
    print(f"{kind_name(rd)}/{name} {word}")
    return 0


ACTIONS = {"status": status, "history": history, "undo": undo, "restart": restart,
           "pause": lambda a, s: set_paused(a, s, True), "resume": lambda a, s: set_paused(a, s, False)}


def add_arguments(p: Any) -> None:
    p.add_argument("action", choices=list(ACTIONS))
    p.add_argument("resources", nargs="+", metavar="TYPE NAME | TYPE/NAME")
    p.add_argument("-w", "--watch", type=lambda v: v.lower() not in ("false", "0"), default=True, nargs="?",
                   const=True, help="status: watch until the rollout finishes (default true)")
    p.add_argument("--timeout", type=float, default=0, help="status: seconds to wait; 0 means no limit")
    p.add_argument("--revision", type=int, default=0, help="history: show this revision's pod template")
    p.add_argument("--to-revision", type=int, default=0, help="undo: the revision to go back to (0: previous)")


def run(args: Any, session: Any) -> int:
    return ACTIONS[args.action](args, session)


COMMANDS = [Command("rollout", "Manage the rollout of a deployment", add_arguments, run)]
