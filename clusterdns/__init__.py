"""Cluster DNS: the `minik8s dns` server (`records`, `server`) and the kube-dns Service (`manifest`).
What a pod's resolv.conf and service environment variables look like is pure pod-spec logic shared with
the kubelet, in `api.resolvconf`."""
