"""kill -9 of the apiserver under write load loses no acknowledged write, and informers ride it out."""
import asyncio
import collections

import httpx

from client.informer import Backoff, Informer
from client.kubeconfig import Config
from client.rest import AsyncClient
from tests.conftest import start_apiserver


async def test_kill_9_under_500_creates_keeps_every_acknowledged_write(etcd, tmp_path):
    server = start_apiserver(etcd, tmp_path)
    ns = "crash"
    try:
        async with server.ahttp() as c:
            assert (await c.post("/api/v1/namespaces", json={"metadata": {"name": ns}})).status_code == 201

            config = Config(server=server.url, token=server.admin_token, ca_file=str(server.ca))
            client = AsyncClient(config)
            informer = Informer(client, "configmaps", namespace=ns, backoff=Backoff(0.05, 0.5))
            adds = collections.Counter()
            deletes = collections.Counter()
            informer.add_handler(on_add=lambda o: adds.update([o["metadata"]["name"]]),
                                 on_delete=lambda o: deletes.update([o["metadata"]["name"]]))
            informer_task = asyncio.create_task(informer.run())
            await informer.wait_for_sync(10)

            acked: set[str] = set()
            killed = asyncio.Event()
            sem = asyncio.Semaphore(50)

            async def create(i: int) -> None:
                async with sem:
                    try:
                        r = await c.post(f"/api/v1/namespaces/{ns}/configmaps",
                                         json={"metadata": {"name": f"cm-{i}"}, "data": {"i": str(i)}})
                    except httpx.HTTPError:
                        return  # in flight when the server died: not acknowledged
                    if r.status_code == 201:
                        acked.add(f"cm-{i}")
                        if len(acked) >= 150 and not killed.is_set():
                            killed.set()
                            server.kill()

            await asyncio.gather(*(create(i) for i in range(500)))
            assert killed.is_set()
            assert 150 <= len(acked) < 500

        server.start()
        async with server.ahttp() as c:
            items = (await c.get(f"/api/v1/namespaces/{ns}/configmaps")).json()["items"]
            stored = {o["metadata"]["name"] for o in items}
            assert acked <= stored, f"lost acknowledged writes: {sorted(acked - stored)[:5]}"

            # Writes after the restart reach the informer too; then it mirrors the server exactly.
            for i in range(5):
                assert (await c.post(f"/api/v1/namespaces/{ns}/configmaps",
                                     json={"metadata": {"name": f"after-{i}"}})).status_code == 201
            expected = stored | {f"after-{i}" for i in range(5)}
            for _ in range(200):
                if set(informer.store.keys()) == {f"{ns}/{n}" for n in expected}:
                    break
                await asyncio.sleep(0.05)
            assert set(informer.store.keys()) == {f"{ns}/{n}" for n in expected}
            assert all(adds[n] == 1 for n in expected), [n for n in expected if adds[n] != 1][:5]
            assert not deletes
        informer.stop()
        await asyncio.gather(informer_task, return_exceptions=True)
        await client.aclose()
    finally:
        if server.proc.poll() is None:
            server.proc.terminate()
            server.proc.wait(10)
