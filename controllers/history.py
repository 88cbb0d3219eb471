"""ControllerRevisions: the template history of DaemonSets and StatefulSets.

A revision stores the owner's pod template as a patch (`{"spec": {"template": {..., "$patch":
"replace"}}}`, as Kubernetes does) and is named `<owner>-<hash>`, where the hash is FNV-1a (32 bit)
of that data plus the owner's `status.collisionCount`, rendered in Kubernetes' "safe" alphabet (no
vowels, no look-alike characters). Pods carry the hash in the `controller-revision-hash` label, which
is how a controller tells updated pods from old ones.

`sync_revisions` finds the revision equal to the current template or creates it (numbered one past
the highest), bumping the collision count when a different revision already holds the name;
`truncate_history` deletes the oldest revisions no pod uses beyond `revisionHistoryLimit`.

Kubernetes renumbers a revision when the owner rolls back to it; our ControllerRevision validation
makes `revision` immutable, so a rolled-back template keeps its old revision number here and the
current revision is identified by its hash, not by having the highest number.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

import orjson

from api.errors import APIError
from client.rest import AsyncClient, is_already_exists, is_not_found
from controllers.common import is_controlled_by, new_controller_ref

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

REVISION_HASH_LABEL = "controller-revision-hash"
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(text: str) -> str:
    """Kubernetes' rand.SafeEncodeString: each character mapped into a vowel-free alphabet."""
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in text)


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def revision_data(template: Obj | None) -> Obj:
    return {"spec": {"template": {**copy.deepcopy(template or {}), "$patch": "replace"}}}


def template_hash(template: Obj | None, collision_count: int | None = None) -> str:
    data = orjson.dumps(revision_data(template), option=orjson.OPT_SORT_KEYS)
    if collision_count:
        data += str(collision_count).encode()
    return safe_encode(str(fnv32a(data)))


def revision_template(revision: Obj) -> Obj:
    template = copy.deepcopy(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    return template


def owned_revisions(revisions: list[Obj], owner: Obj) -> list[Obj]:
    return sorted((r for r in revisions if is_controlled_by(r, owner)),
                  key=lambda r: (int(r.get("revision") or 0), r["metadata"]["name"]))


async def sync_revisions(client: AsyncClient, owner: Obj, revisions: list[Obj], *,
                         resource: str) -> tuple[Obj, str]:
    """The revision of `owner`'s current template (found or created) and its hash. `revisions` are the
    owner's revisions from the cache; `resource` names the owner's kind for the collision-count write."""
    template = (owner.get("spec") or {}).get("template")
    data = revision_data(template)
    collisions = int((owner.get("status") or {}).get("collisionCount") or 0)
    for revision in revisions:
        if revision.get("data") == data:
            return revision, revision["metadata"].get("labels", {}).get(REVISION_HASH_LABEL) \
                or revision["metadata"]["name"].rsplit("-", 1)[-1]
    number = max((int(r.get("revision") or 0) for r in revisions), default=0) + 1
    meta = owner["metadata"]
    labels = dict(((owner.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
    while True:
        digest = template_hash(template, collisions)
        body = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": f"{meta['name']}-{digest}", "namespace": meta["namespace"],
                             "labels": {**labels, REVISION_HASH_LABEL: digest},
                             "ownerReferences": [new_controller_ref(owner)]},
                "data": data, "revision": number}
        try:
            created = await client.create("controllerrevisions", body, meta["namespace"])
            logger.info("%s %s/%s: new revision %d (%s)", owner["kind"], meta["namespace"], meta["name"], number,
                        digest)
            return created, digest
        except APIError as e:
            if not is_already_exists(e):
                raise
        existing = await client.get_or_none("controllerrevisions", body["metadata"]["name"], meta["namespace"])
        if existing is not None and existing.get("data") == data and is_controlled_by(existing, owner):
            return existing, digest
        # A different template (or another owner) holds the name: a hash collision.
        collisions += 1
        await client.patch(resource, meta["name"], {"status": {"collisionCount": collisions}}, meta["namespace"],
                           subresource="status")


async def truncate_history(client: AsyncClient, revisions: list[Obj], live_hashes: set[str], limit: int | None,
                           current: Obj) -> None:
    """Delete the oldest revisions that no live pod uses, keeping at most `limit` of them."""
    unused = [r for r in revisions if r["metadata"]["name"] != current["metadata"]["name"]
              and (r["metadata"].get("labels") or {}).get(REVISION_HASH_LABEL) not in live_hashes]
    limit = 10 if limit is None else int(limit)
    for revision in unused[:max(0, len(unused) - limit)]:
        meta = revision["metadata"]
        try:
            await client.delete("controllerrevisions", meta["name"], meta["namespace"],
                                preconditions={"uid": meta["uid"]})
        except APIError as e:
            if not is_not_found(e):
                raise
