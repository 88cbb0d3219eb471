"""Watch semantics against a real etcd: order, resume, bookmarks, initial events, 410 Gone."""
import json

import httpx
import pytest

from tests.conftest import start_apiserver


def events(client: httpx.Client, path: str, params: dict, until: int, timeout: int = 5) -> list[dict]:
    out = []
    with client.stream("GET", path, params={"watch": "1", "timeoutSeconds": str(timeout), **params}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line:
                out.append(json.loads(line))
                if len(out) >= until:
                    break
    return out


def cm(name, value):
    return {"metadata": {"name": name, "labels": {"w": "1"}}, "data": {"v": value}}


def test_watch_sees_every_change_in_order(http, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    start = http.get(base).json()["metadata"]["resourceVersion"]
    for i in range(10):
        assert http.post(base, json=cm(f"c{i}", "0")).status_code == 201
    for i in range(10):
        assert http.patch(f"{base}/c{i}", json={"data": {"v": "1"}},
                          headers={"Content-Type": "application/merge-patch+json"}).status_code == 200
    for i in range(5):
        assert http.delete(f"{base}/c{i}").status_code == 200
    got = events(http, base, {"resourceVersion": start}, until=25)
    kinds = [e["type"] for e in got]
    assert kinds == ["ADDED"] * 10 + ["MODIFIED"] * 10 + ["DELETED"] * 5
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in got]
    assert rvs == sorted(rvs) and len(set(rvs)) == 25
    assert [e["object"]["metadata"]["name"] for e in got[:10]] == [f"c{i}" for i in range(10)]


def test_resume_delivers_exactly_the_missed_events(http, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    http.post(base, json=cm("a", "0"))
    seen = events(http, base, {"resourceVersion": "0"}, until=1)
    assert seen[0]["type"] == "ADDED"
    last = seen[0]["object"]["metadata"]["resourceVersion"]
    # While "disconnected": three changes happen.
    http.post(base, json=cm("b", "0"))
    http.patch(f"{base}/a", json={"data": {"v": "9"}}, headers={"Content-Type": "application/merge-patch+json"})
    http.delete(f"{base}/b")
    missed = events(http, base, {"resourceVersion": last}, until=3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in missed] == [
        ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    # Nothing more arrives: the stream ends at its timeout with exactly those three.
    again = events(http, base, {"resourceVersion": last}, until=100, timeout=1)
    assert len(again) == 3


def test_watch_without_resource_version_starts_with_current_state(http, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    for n in ("x", "y"):
        http.post(base, json=cm(n, "0"))
    got = events(http, base, {}, until=2)
    assert sorted(e["object"]["metadata"]["name"] for e in got) == ["x", "y"]
    assert {e["type"] for e in got} == {"ADDED"}


def test_send_initial_events_ends_with_annotated_bookmark(http, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    http.post(base, json=cm("only", "0"))
    got = events(http, base, {"sendInitialEvents": "true", "allowWatchBookmarks": "true",
                              "resourceVersionMatch": "NotOlderThan"}, until=2)
    assert got[0]["type"] == "ADDED"
    assert got[1]["type"] == "BOOKMARK"
    assert got[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true"


def test_label_selector_filters_watch_and_reports_objects_leaving_it(http, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    start = http.get(base).json()["metadata"]["resourceVersion"]
    http.post(base, json={"metadata": {"name": "in", "labels": {"team": "a"}}})
    http.post(base, json={"metadata": {"name": "out", "labels": {"team": "b"}}})
    http.patch(f"{base}/in", json={"metadata": {"labels": {"team": "b"}}},
               headers={"Content-Type": "application/merge-patch+json"})
    got = events(http, base, {"resourceVersion": start, "labelSelector": "team=a"}, until=2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in got] == [("ADDED", "in"), ("DELETED", "in")]


@pytest.fixture(scope="module")
def small_window_apiserver(etcd, tmp_path_factory):
    server = start_apiserver(etcd, tmp_path_factory.mktemp("small-window"), "--watch-cache-size", "5")
    yield server
    server.proc.terminate()
    server.proc.wait(10)


def test_too_old_resource_version_answers_410_gone(small_window_apiserver):
    with small_window_apiserver.http() as http:
        ns = "gone-test"
        http.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
        base = f"/api/v1/namespaces/{ns}/configmaps"
        first = http.post(base, json=cm("first", "0")).json()["metadata"]["resourceVersion"]
        for i in range(10):
            http.patch(f"{base}/first", json={"data": {"v": str(i)}},
                       headers={"Content-Type": "application/merge-patch+json"})
        got = events(http, base, {"resourceVersion": first}, until=1)
    assert got[0]["type"] == "ERROR"
    assert got[0]["object"]["code"] == 410
    assert got[0]["object"]["reason"] == "Expired"


def test_bookmarks_carry_progress(http, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    start = http.get(base).json()["metadata"]["resourceVersion"]
    # A change elsewhere advances the revision; the idle watcher learns it through a bookmark.
    http.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"generateName": "elsewhere-"}})
    got = events(http, base, {"resourceVersion": start, "allowWatchBookmarks": "true"}, until=1, timeout=8)
    assert got[0]["type"] == "BOOKMARK"
    assert int(got[0]["object"]["metadata"]["resourceVersion"]) > int(start)
