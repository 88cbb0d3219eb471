from client.events import EventRecorder


def node_obj():
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "u-n1", "resourceVersion": "7"}}


def pod_obj():
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "3"}}


async def events(aclient, ns=None):
    return (await aclient.list("events", ns))["items"]


async def test_creates_event_with_involved_object(aclient):
    rec = EventRecorder(aclient, "scheduler", host="node-a")
    rec.event(pod_obj(), "Normal", "Scheduled", "Successfully assigned shop/web to n1")
    await rec.flush()
    [ev] = await events(aclient, "shop")
    assert ev["involvedObject"] == {"kind": "Pod", "apiVersion": "v1", "name": "web", "namespace": "shop",
                                    "uid": "u-1", "resourceVersion": "3"}
    assert ev["metadata"]["name"].startswith("web.")
    assert (ev["type"], ev["reason"], ev["count"]) == ("Normal", "Scheduled", 1)
    assert ev["source"] == {"component": "scheduler", "host": "node-a"}
    assert ev["reportingComponent"] == "scheduler"
    assert ev["firstTimestamp"] == ev["lastTimestamp"]


async def test_cluster_scoped_objects_get_events_in_default(aclient):
    rec = EventRecorder(aclient, "kubelet")
    rec.event(node_obj(), "Warning", "NodeNotReady", "down")
    await rec.flush()
    assert [e["involvedObject"]["name"] for e in await events(aclient, "default")] == ["n1"]


async def test_repeats_are_aggregated_by_patching_count(aclient, fake):
    rec = EventRecorder(aclient, "controller-manager")
    for _ in range(3):
        rec.event(pod_obj(), "Warning", "FailedCreate", "quota exceeded")
    rec.event(pod_obj(), "Warning", "FailedCreate", "something else")
    await rec.flush()
    evs = sorted(await events(aclient, "shop"), key=lambda e: e["message"])
    assert [(e["message"], e["count"]) for e in evs] == [("quota exceeded", 3), ("something else", 1)]
    methods = [m for m, p, _, _ in fake.actions if p.endswith("/events") or "/events/" in p]
    assert methods.count("POST") == 2 and methods.count("PATCH") == 2


async def test_recreates_when_aggregated_event_was_deleted(aclient):
    rec = EventRecorder(aclient, "c")
    rec.event(pod_obj(), "Normal", "R", "m")
    await rec.flush()
    [ev] = await events(aclient, "shop")
    await aclient.delete("events", ev["metadata"]["name"], "shop")
    rec.event(pod_obj(), "Normal", "R", "m")
    await rec.flush()
    [again] = await events(aclient, "shop")
    assert again["count"] == 1 and again["metadata"]["name"] != ev["metadata"]["name"]


async def test_failures_never_reach_the_caller(aclient, fake):
    fake.down = True
    rec = EventRecorder(aclient, "c")
    rec.event(pod_obj(), "Normal", "R", "m")  # no exception
    await rec.flush()
    fake.down = False
    rec.event(pod_obj(), "Normal", "R", "m")
    await rec.flush()
    assert len(await events(aclient, "shop")) == 1


async def test_a_burst_beyond_the_queue_drops_events_with_one_log_line(aclient, monkeypatch, caplog):
    import client.events as events_module
    monkeypatch.setattr(events_module, "MAX_PENDING", 3)
    rec = EventRecorder(aclient, "scheduler")
    for i in range(7):
        pod = pod_obj()
        pod["metadata"]["name"] = f"web-{i}"
        rec.event(pod, "Normal", "Scheduled", f"assigned web-{i}")
    await rec.flush()
    assert sorted(e["involvedObject"]["name"] for e in await events(aclient, "shop")) == ["web-0", "web-1", "web-2"]
    drops = [r for r in caplog.records if r.name == "client.events" and "dropping events" in r.getMessage()]
    assert len(drops) == 1, [r.getMessage() for r in caplog.records]
    # The next event after the burst goes through and reports how many were lost.
    rec.event(pod_obj(), "Normal", "Scheduled", "after")
    await rec.flush()
    assert any("dropped 4 events" in r.getMessage() for r in caplog.records)
    assert "web" in [e["involvedObject"]["name"] for e in await events(aclient, "shop")]
