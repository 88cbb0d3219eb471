"""kube-proxy for minik8s: Services + Endpoints in, packet rewriting rules of one node out.

    model.py              API dicts -> ServicePort records (pure); NodeContext
    iptables.py           iptables renderer + partial `iptables-restore` input (pure)
    nftables.py           nftables renderer, incremental update, `nft -f` diff script (pure)
    ipvs.py               IPVS renderer: virtual/real servers, bound VIPs, companion iptables rules (pure)
    *_backend.py          apply a rendering: one restore / one nft transaction / netlink calls per sync
    conntrack.py          stale UDP flows after endpoint changes
    syncer.py             when to sync: coalesced, rate-limited, periodic, retried
    proxier.py            informers + snapshot + backend + /healthz
    lballoc.py            LoadBalancer IPs from a pool, by the Lease holder only
    server.py, cmd.py     the `minik8s proxy` process and its flags
"""
