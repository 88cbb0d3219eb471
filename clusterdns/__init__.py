"""Cluster DNS: the `minik8s dns` server (`records`, `server`), the kube-dns Service (`manifest`) and the
pure helpers the kubelet uses for a pod's resolv.conf and service environment variables (`resolvconf`)."""
