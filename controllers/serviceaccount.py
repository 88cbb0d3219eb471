"""ServiceAccounts: every active namespace has a `default` ServiceAccount (recreated if deleted).

Keys are namespace names. A namespace is queued when it appears or changes and when one of its
`default` ServiceAccounts changes or disappears; `reconcile` creates the account when the namespace is
active (not being deleted) and the cache does not hold it. AlreadyExists means the cache lagged and is
fine. Terminating namespaces are left alone: their content is being removed.
"""
from __future__ import annotations

import logging

from api.errors import APIError
from client.rest import is_already_exists
from controllers.base import Controller

logger = logging.getLogger(__name__)

DEFAULT_ACCOUNTS = ("default",)


class ServiceAccountController(Controller):
    name = "serviceaccount"
    workers = 2

    def setup(self) -> None:
        self.namespaces = self.factory.informer("namespaces")
        self.namespaces.add_handler(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new))
        self.accounts = self.factory.informer("serviceaccounts")
        self.accounts.add_handler(on_delete=self._account_gone)

    def _account_gone(self, sa: dict) -> None:
        if sa["metadata"]["name"] in DEFAULT_ACCOUNTS:
            self.queue.add(sa["metadata"]["namespace"])

    async def reconcile(self, key: str) -> None:
        ns = self.namespaces.store.get(key)
        terminating = ns is not None and (ns["metadata"].get("deletionTimestamp") or
                                          (ns.get("status") or {}).get("phase") == "Terminating")
        if ns is None or terminating:
            return
        for name in DEFAULT_ACCOUNTS:
            if f"{key}/{name}" in self.accounts.store:
                continue
            body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": key}}
            try:
                await self.client.create("serviceaccounts", body, key)
            except APIError as e:
                if is_already_exists(e):
                    continue
                if e.code in (403, 404):  # the namespace went Terminating or away meanwhile
                    return
                raise
            logger.info("created ServiceAccount %s/%s", key, name)
