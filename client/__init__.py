"""The minik8s client library: everything a component needs to talk to the apiserver.

- `kubeconfig`: `Config` (server, CA, token/cert) from a kubeconfig file or by hand; `write_kubeconfig`.
- `rest`: `AsyncClient` / `Client` — CRUD, patch, subresources, list pagination, watch; errors as `APIError`.
- `informer` + `store`: list+watch cache with handlers, indexes, relist on 410, periodic resync.
- `workqueue`: deduping, rate-limited key queue and the standard worker loop.
- `leaderelection`: Lease-based leader election.
- `events`: fire-and-forget EventRecorder with aggregation.
- `testing`: an in-memory fake apiserver behind httpx.MockTransport, for unit tests.
"""
from client.kubeconfig import Config, write_kubeconfig
from client.rest import AsyncClient, Client, is_already_exists, is_conflict, is_gone, is_not_found

__all__ = ["AsyncClient", "Client", "Config", "is_already_exists", "is_conflict", "is_gone", "is_not_found",
           "write_kubeconfig"]
