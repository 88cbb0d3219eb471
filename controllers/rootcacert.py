"""Root CA publisher: every active namespace has a ConfigMap `kube-root-ca.crt` holding the cluster CA.

Pods read it to verify the apiserver (the ServiceAccount admission mounts its `ca.crt` next to the token).
Keys are namespace names; a namespace is queued when it appears or changes and when its ConfigMap changes
or disappears. `reconcile` creates the ConfigMap, or puts back its content when someone changed it, as
Kubernetes' root-ca-cert-publisher does. Without `--root-ca-file` the controller does nothing.
"""
from __future__ import annotations

import logging
from pathlib import Path

from api.errors import APIError
from client.rest import is_already_exists
from controllers.base import Controller

logger = logging.getLogger(__name__)

NAME = "kube-root-ca.crt"
ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
               "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
               "guaranteed across distributions of Kubernetes clusters.")


class RootCACertPublisher(Controller):
    name = "root-ca-cert-publisher"
    workers = 2

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--root-ca-file", default=None,
                           help="the cluster CA published as ConfigMap kube-root-ca.crt in every namespace")

    def setup(self) -> None:
        path = self.options.get("root_ca_file")
        self.ca = Path(path).read_text() if path else None
        if self.ca is None:
            logger.info("no --root-ca-file: kube-root-ca.crt is not published")
        self.namespaces = self.factory.informer("namespaces")
        self.namespaces.add_handler(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new))
        self.configmaps = self.factory.informer("configmaps", field_selector=f"metadata.name={NAME}")
        self.configmaps.add_handler(on_update=lambda old, new: self._changed(new), on_delete=self._changed)

    def _changed(self, cm: dict) -> None:
        self.queue.add(cm["metadata"]["namespace"])

    async def reconcile(self, key: str) -> None:
        ns = self.namespaces.store.get(key)
        if self.ca is None or ns is None or ns["metadata"].get("deletionTimestamp") or \
                (ns.get("status") or {}).get("phase") == "Terminating":
            return
        current = self.configmaps.store.get(f"{key}/{NAME}")
        try:
            if current is None:
                await self.client.create("configmaps", {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": NAME, "namespace": key, "annotations": {ANNOTATION: DESCRIPTION}},
                    "data": {"ca.crt": self.ca}}, key)
                logger.info("published %s in %s", NAME, key)
            elif (current.get("data") or {}).get("ca.crt") != self.ca:
                await self.client.patch("configmaps", NAME, {"data": {"ca.crt": self.ca}}, key)
                logger.info("restored %s in %s", NAME, key)
        except APIError as e:
            if is_already_exists(e) or e.code in (403, 404):  # cache lag, or the namespace is going away
                return
            raise
