"""etcd storage: objects as JSON under `/registry/...`, resourceVersion = etcd `mod_revision`.

Every write is one etcd transaction guarded by a compare, never a read-then-write:
create compares `create_revision == 0` (absent), update and delete compare `mod_revision` with the
revision the caller read. A write may carry side keys in the same transaction (a Service and the
ClusterIP/NodePort keys it holds), so an allocation can never leak or be shared.

Objects are stored without `metadata.resourceVersion`; it is filled in from the key's revision on read.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import aetcd
import orjson
from aetcd import rpc

logger = logging.getLogger(__name__)

Obj = dict[str, Any]


def encode(obj: Obj) -> bytes:
    meta = obj.get("metadata")
    if meta and "resourceVersion" in meta:
        meta = dict(meta)
        del meta["resourceVersion"]
        obj = {**obj, "metadata": meta}
    return orjson.dumps(obj)


def decode(value: bytes, revision: int) -> Obj:
    obj = orjson.loads(value)
    obj["metadata"]["resourceVersion"] = str(revision)
    return obj


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


@dataclass
class SideEffects:
    """Extra keys written atomically with an object: each `create` must be absent, each `delete` present."""

    create: dict[str, bytes] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)


class CompareFailed(Exception):
    """The transaction's guard did not hold; `current` is the key's present value (None if absent)."""

    def __init__(self, current: Obj | None, side_key_taken: str | None = None):
        super().__init__("compare failed")
        self.current = current
        self.side_key_taken = side_key_taken


# Lists of the whole keyspace (cache priming) exceed gRPC's default 4 MiB message limit at a few
# thousand pods.
GRPC_OPTIONS = {"grpc.max_receive_message_length": 512 * 1024 * 1024,
                "grpc.max_send_message_length": 64 * 1024 * 1024}


class Store:
    """One etcd client; with several `--etcd-servers`, a call that cannot reach the current member moves
    the store to the next one (the caller's operation fails and is retried by its client)."""

    def __init__(self, endpoints: list[tuple[str, int]]):
        self.endpoints = endpoints
        self._current = 0
        self.client = self._new_client()
        # Objects this process just wrote, by (key, revision): the watch cache takes them instead of
        # decoding the same JSON again from the watch event.
        self.written: dict[tuple[bytes, int], Obj] = {}

    def _new_client(self) -> aetcd.Client:
        host, port = self.endpoints[self._current]
        return aetcd.Client(host=host, port=port, timeout=10, options=GRPC_OPTIONS)

    async def connect(self) -> None:
        await self.client.connect()

    async def close(self) -> None:
        await self.client.close()

    async def failover(self) -> None:
        if len(self.endpoints) < 2:
            return
        old = self.client
        self._current = (self._current + 1) % len(self.endpoints)
        self.client = self._new_client()
        logger.warning("etcd: switching to %s:%d", *self.endpoints[self._current])
        try:
            await old.close()
        except Exception:  # the old channel is broken anyway
            pass

    def _remember(self, key: bytes, revision: int, obj: Obj) -> None:
        if len(self.written) > 10000:  # the watch is down or lagging: stop remembering
            self.written.clear()
        self.written[(key, revision)] = obj

    def take_written(self, key: bytes, revision: int) -> Obj | None:
        return self.written.pop((key, revision), None)

    # -- reads ---------------------------------------------------------------------------------------

    async def _range(self, key: bytes, range_end: bytes | None = None, *, limit: int = 0, revision: int = 0,
                     count_only: bool = False, keys_only: bool = False) -> rpc.RangeResponse:
        await self.client.connect()
        req = rpc.RangeRequest(key=key, limit=limit, revision=revision, count_only=count_only,
                               keys_only=keys_only)
        if range_end is not None:
            req.range_end = range_end
        return await self.client.kvstub.Range(req, timeout=10, metadata=self.client.metadata)

    async def current_revision(self) -> int:
        """etcd's current revision, read cheaply: any single-key range carries it in its header."""
        resp = await self._range(b"/registry/")
        return resp.header.revision

    async def get(self, key: str) -> Obj | None:
        resp = await self._range(key.encode())
        if not resp.kvs:
            return None
        kv = resp.kvs[0]
        return decode(kv.value, kv.mod_revision)

    async def list(self, prefix: str, *, start: str | None = None, limit: int = 0,
                   revision: int = 0) -> tuple[list[Obj], int, bool]:
        """Objects under `prefix` from `start` (inclusive) at `revision` (0 = latest).

        Returns (items, revision read at, whether more remain)."""
        p = prefix.encode()
        resp = await self._range(start.encode() if start else p, prefix_end(p), limit=limit, revision=revision)
        items = [decode(kv.value, kv.mod_revision) for kv in resp.kvs]
        return items, revision or resp.header.revision, bool(resp.more)

    async def list_keys(self, prefix: str) -> list[str]:
        p = prefix.encode()
        resp = await self._range(p, prefix_end(p), keys_only=True)
        return [kv.key.decode() for kv in resp.kvs]

    # -- writes --------------------------------------------------------------------------------------

    async def _txn(self, compare: list, success: list, failure: list) -> rpc.TxnResponse:
        await self.client.connect()
        req = rpc.TxnRequest(compare=compare, success=success, failure=failure)
        return await self.client.kvstub.Txn(req, timeout=10, metadata=self.client.metadata)

    @staticmethod
    def _cmp(key: bytes, target: str, value: int) -> rpc.Compare:
        c = rpc.Compare(key=key, result=rpc.Compare.EQUAL)
        if target == "create":
            c.target = rpc.Compare.CREATE
            c.create_revision = value
        else:
            c.target = rpc.Compare.MOD
            c.mod_revision = value
        return c

    @staticmethod
    def _put(key: bytes, value: bytes) -> rpc.RequestOp:
        return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value))

    @staticmethod
    def _get_op(key: bytes) -> rpc.RequestOp:
        return rpc.RequestOp(request_range=rpc.RangeRequest(key=key))

    @staticmethod
    def _del(key: bytes) -> rpc.RequestOp:
        return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))

    def _side(self, side: SideEffects | None) -> tuple[list, list]:
        if side is None:
            return [], []
        compares = [self._cmp(k.encode(), "create", 0) for k in side.create]
        ops = [self._put(k.encode(), v) for k, v in side.create.items()]
        ops += [self._del(k.encode()) for k in side.delete]
        return compares, ops

    async def _explain_failure(self, key: bytes, resp: rpc.TxnResponse, side: SideEffects | None) -> CompareFailed:
        kvs = resp.responses[0].response_range.kvs
        current = decode(kvs[0].value, kvs[0].mod_revision) if kvs else None
        taken = None
        for i, side_key in enumerate((side.create if side else {}), start=1):
            if resp.responses[i].response_range.kvs:
                taken = side_key
                break
        return CompareFailed(current, taken)

    async def create(self, key: str, obj: Obj, side: SideEffects | None = None) -> int:
        """Store `obj` at `key` if absent; returns the new revision. Raises CompareFailed if present."""
        k = key.encode()
        side_cmp, side_ops = self._side(side)
        failure = [self._get_op(k)] + [self._get_op(s.encode()) for s in (side.create if side else {})]
        resp = await self._txn([self._cmp(k, "create", 0)] + side_cmp, [self._put(k, encode(obj))] + side_ops,
                               failure)
        if not resp.succeeded:
            raise await self._explain_failure(k, resp, side)
        self._remember(k, resp.header.revision, obj)
        return resp.header.revision

    async def update(self, key: str, obj: Obj, expected_revision: int, side: SideEffects | None = None) -> int:
        k = key.encode()
        side_cmp, side_ops = self._side(side)
        failure = [self._get_op(k)] + [self._get_op(s.encode()) for s in (side.create if side else {})]
        resp = await self._txn([self._cmp(k, "mod", expected_revision)] + side_cmp,
                               [self._put(k, encode(obj))] + side_ops, failure)
        if not resp.succeeded:
            raise await self._explain_failure(k, resp, side)
        self._remember(k, resp.header.revision, obj)
        return resp.header.revision

    async def delete(self, key: str, expected_revision: int, side: SideEffects | None = None) -> int:
        k = key.encode()
        side_ops = [self._del(s.encode()) for s in (side.delete if side else [])]
        resp = await self._txn([self._cmp(k, "mod", expected_revision)], [self._del(k)] + side_ops,
                               [self._get_op(k)])
        if not resp.succeeded:
            raise await self._explain_failure(k, resp, None)
        return resp.header.revision

    async def put_raw(self, key: str, value: bytes) -> int:
        resp = await self._txn([], [self._put(key.encode(), value)], [])
        return resp.header.revision
